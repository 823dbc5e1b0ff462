"""The running tallies the store's triggers keep agree with a scan of the rows they count."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from visinstruct.core.store import run_tallies
from visinstruct.core.store.database import Store
from visinstruct.core.store.snapshots import LedgerTally, UnitTally, score_counts
from visinstruct.tests.tui.support_monitor import run_pipeline, write_config


def test_tallies_match_a_scan_after_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = run_pipeline(write_config(tmp_path))
    with Store(db) as store:
        tallied_scores = score_counts(store, 7.0)
        tallied_units = UnitTally("").count(store)
        tallied_calls = LedgerTally(1).counts(store)
    # The same store read as one without tallies would be (a dropped table is damage now).
    monkeypatch.setattr(run_tallies, "has_tallies", lambda store: False)
    with Store(db) as store:
        assert score_counts(store, 7.0) == tallied_scores
        assert UnitTally("").count(store) == tallied_units > 0
        assert LedgerTally(1).counts(store) == tallied_calls


def _generation(conn: sqlite3.Connection, task: str, model: str, status: str,
                pairs: int, image_id: int = 1) -> tuple[int, list[int]]:
    gid = conn.execute(
        "INSERT INTO generations (image_id, task, prompt_version, model, status, created_at) "
        "VALUES (?, ?, 'v1', ?, ?, 0)", (image_id, task, model, status)).lastrowid
    ids = [conn.execute("INSERT INTO pairs (generation_id, idx, question, answer) "
                        "VALUES (?, ?, 'q', 'a')", (gid, i)).lastrowid for i in range(pairs)]
    return int(gid or 0), [int(i or 0) for i in ids]


def _gate(conn: sqlite3.Connection, pair_id: int) -> None:
    conn.execute("INSERT INTO pair_gates (pair_id, rule, action) VALUES (?, 'cut_off', 'drop')",
                 (pair_id,))


def test_gated_and_short_answer_units_count_as_done(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """All pairs gated, a short answer from facts, a skipped short answer: three done units."""
    db = tmp_path / "units.db"
    with Store(db) as store:
        store.write_sync(lambda c: c.execute(
            "INSERT INTO images (id, file_name, width, height) VALUES (1, 'a.jpg', 4, 4), "
            "(2, 'b.jpg', 4, 4)"))

        def write(conn: sqlite3.Connection) -> None:
            _, gated = _generation(conn, "conversation", "llava", "ok", 2)
            for pair_id in gated:
                _gate(conn, pair_id)
            _gate(conn, gated[0])                        # a second rule on a gated pair
            _, half = _generation(conn, "detail", "llava", "ok", 2)
            _gate(conn, half[0])                         # one pair left for the judge: not done
            _generation(conn, "short_answer", "facts", "ok", 3)
            _generation(conn, "short_answer", "facts", "skipped", 0, image_id=2)

        store.write_sync(write)
        assert UnitTally("llava").count(store) == 3
        # A gate change that lets a pair through undoes the gated unit.
        store.write_sync(lambda c: c.execute(
            "DELETE FROM pair_gates WHERE pair_id = (SELECT MIN(id) FROM pairs)"))
        assert UnitTally("llava").count(store) == 2
    monkeypatch.setattr(run_tallies, "has_tallies", lambda store: False)
    with Store(db) as store:
        assert UnitTally("llava").count(store) == 2
