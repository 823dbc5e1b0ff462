"""A run killed with SIGKILL part-way resumes without paying twice and ends as an uninterrupted
run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from visinstruct.dataset import sample

REPO = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, name: str, latency: float) -> Path:
    script = tmp_path / f"{name}-script.json"
    script.write_text(json.dumps({"latency": latency, "rules": []}))
    config = tmp_path / f"{name}.toml"
    config.write_text(f"""
db = "{tmp_path / (name + '.db')}"
[source]
coco_captions = "{sample.captions_path()}"
coco_instances = "{sample.instances_path()}"
[generation]
model = "fake"
[judge]
model = "fake"
threshold = 7
[models.fake]
backend = "scripted"
script = "{script}"
max_in_flight = 4
""")
    return config


def run_cli(config: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "visinstruct.core.cli", "run", "--headless", "--json",
         "--config", str(config), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)


def last_run_status(db: Path) -> str:
    shown = subprocess.run([sys.executable, "-m", "visinstruct.core.cli", "status", "--json",
                            "--db", str(db)], capture_output=True, text=True, cwd=REPO, check=True)
    return str(json.loads(shown.stdout)["last_run"]["status"])


def ok_calls(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT COUNT(*) FROM llm_calls WHERE status = 'ok'").fetchone()[0]
    except sqlite3.Error:
        return 0


def kept(db: Path) -> set[tuple[int, str, str, str]]:
    with sqlite3.connect(db) as conn:
        return set(conn.execute(
            "SELECT image_id, task, question, answer FROM pair_state "
            "WHERE decision IS NULL AND score >= 7"))


@pytest.mark.timeout(180)
def test_sigkill_then_resume_pays_nothing_twice(tmp_path: Path) -> None:
    # The reference: the same scripted answers, never interrupted.
    reference_config = write_config(tmp_path, "reference", 0.0)
    assert run_cli(reference_config).wait(timeout=120) == 0
    reference = kept(tmp_path / "reference.db")
    assert reference

    # Slow enough that the run is still going when `status` (a new process) looks at it.
    config = write_config(tmp_path, "killed", 0.2)
    db = tmp_path / "killed.db"
    proc = run_cli(config)
    deadline = time.monotonic() + 60
    while ok_calls(db) < 40:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)
    assert last_run_status(db) == "running"  # its process holds the writer lock
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # The row still says running; the lock died with the process, and status says so.
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT status FROM runs").fetchone()[0] == "running"
    conn.close()
    assert last_run_status(db) == "interrupted"

    with sqlite3.connect(db) as conn:
        finished_before = {row[0] for row in conn.execute(
            "SELECT key FROM llm_calls WHERE status = 'ok'")}
        last_id_before = conn.execute("SELECT MAX(id) FROM llm_calls").fetchone()[0]
    assert 40 <= len(finished_before) < 144

    resumed = run_cli(config)
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read().decode() if resumed.stderr else ""

    with sqlite3.connect(db) as conn:
        resent = [row[0] for row in conn.execute(
            "SELECT key FROM llm_calls WHERE id > ?", (last_id_before,))]
        assert not finished_before & set(resent), "a finished call was sent again"
        doubled = conn.execute(
            "SELECT key, COUNT(*) FROM llm_calls WHERE status = 'ok' GROUP BY key "
            "HAVING COUNT(*) > 1").fetchall()
        assert doubled == []
        units = conn.execute(
            "SELECT COUNT(DISTINCT image_id || task) FROM generations").fetchone()[0]
        assert units == 24 * 3
        unjudged = conn.execute(
            "SELECT COUNT(*) FROM generations g WHERE status = 'ok' AND NOT EXISTS "
            "(SELECT 1 FROM judgements j WHERE j.generation_id = g.id)").fetchone()[0]
        assert unjudged == 0
        assert conn.execute("SELECT COUNT(*) FROM llm_calls WHERE status = 'in_flight'"
                            ).fetchone()[0] == 0
    assert kept(db) == reference
