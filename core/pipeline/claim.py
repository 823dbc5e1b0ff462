"""A run's claim on its store: one live writer at a time, and the run's own row."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from dataclasses import asdict

from visinstruct.core.config import Config
from visinstruct.core.sanitize.redact import redact
from visinstruct.core.store.database import Store, now
from visinstruct.core.store.run_config import settings_json
from visinstruct.core.store.writer_lock import refuse_live_writer


def claim(store: Store, config: Config) -> int:
    """Refuse a second live writer; mark dead runs interrupted; insert this run's row."""
    refuse_live_writer(store.path, "stop it first or use another --db")
    host = socket.gethostname()
    settings = settings_json(config)  # the whole config, so the app can resume with it

    def work(conn: sqlite3.Connection) -> int:
        conn.execute("UPDATE runs SET status = 'interrupted', "
                     "finished_at = COALESCE(finished_at, ?) "
                     "WHERE status = 'running'", (now(),))
        cursor = conn.execute(
            "INSERT INTO runs (started_at, status, pid, host, config) "
            "VALUES (?, 'running', ?, ?, ?)",
            (now(), os.getpid(), host, settings))
        return int(cursor.lastrowid or 0)

    run_id: int = store.write_sync(work)
    store.set_meta("judge_threshold", str(config.judge.threshold))
    store.set_meta("tasks", json.dumps(list(config.generation.tasks)))
    # Redacted: a base_url may carry a password.
    store.set_meta("models", redact(json.dumps(
        {n: asdict(m) for n, m in config.models.items()}, default=str)))
    return run_id
