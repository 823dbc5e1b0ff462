"""The running tallies the store's triggers keep agree with a scan of the rows they count."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from visinstruct.core.store import database, run_tallies
from visinstruct.core.store.database import Store
from visinstruct.core.store.pictures import pictures_sent
from visinstruct.core.store.schema import MIGRATIONS
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


def _ledger_pictures(conn: sqlite3.Connection, run_id: int | None = None) -> int:
    where = " AND run_id = ?" if run_id is not None else ""
    return int(conn.execute(f"SELECT COALESCE(SUM(pictures), 0) FROM llm_calls "
                            f"WHERE status = 'ok'{where}",
                            (run_id,) if run_id is not None else ()).fetchone()[0])


def _call(conn: sqlite3.Connection, run_id: int | None, status: str, pictures: int) -> int:
    return int(conn.execute(
        "INSERT INTO llm_calls (key, run_id, stage, model, status, pictures, started_at) "
        "VALUES ('k', ?, 'generate', 'vlm', ?, ?, 0)", (run_id, status, pictures)).lastrowid or 0)


def test_pictures_sent_come_from_the_call_tally_and_match_the_ledger(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Migration 18 sums the pictures a store of schema 14 already holds; then the triggers
    keep the sum through every change of a call's status."""
    db = tmp_path / "pictures.db"
    monkeypatch.setattr(database, "MIGRATIONS", tuple(m for m in MIGRATIONS if m[0] <= 14))
    flying: list[int] = []
    answered: list[int] = []

    def before(conn: sqlite3.Connection) -> None:
        answered.append(_call(conn, 1, "ok", 2))
        _call(conn, 1, "error", 1)      # a failed attempt's picture is not counted as sent
        _call(conn, 1, "ok", 0)
        flying.append(_call(conn, 1, "in_flight", 4))
        _call(conn, 2, "ok", 3)
        _call(conn, None, "ok", 5)      # evaluation's calls belong to no run

    with Store(db) as store:
        store.write_sync(before)
    monkeypatch.undo()
    with Store(db) as store:
        assert pictures_sent(store, 1) == 2 and pictures_sent(store, 2) == 3
        assert pictures_sent(store) == 10

        def after(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE llm_calls SET status = 'ok' WHERE id = ?", (flying[0],))
            _call(conn, 1, "ok", 1)
            conn.execute("UPDATE llm_calls SET status = 'abandoned' WHERE id = ?", (answered[0],))
            flying.append(_call(conn, 1, "in_flight", 7))

        store.write_sync(after)
        assert pictures_sent(store, 1) == 4 + 1
        # A run row now keeps the units its run found done (unknown for the runs before).
        assert "start_done" in {row[1] for row in store.query("PRAGMA table_info(runs)")}
    with sqlite3.connect(db) as conn:
        assert pictures_sent_rows(db) == (_ledger_pictures(conn, 1), _ledger_pictures(conn))
    conn.close()


def pictures_sent_rows(db: Path) -> tuple[int, int]:
    with Store(db) as store:
        return pictures_sent(store, 1), pictures_sent(store)
