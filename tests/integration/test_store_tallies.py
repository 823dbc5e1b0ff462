"""The running tallies the store's triggers keep agree with a scan of the rows they count."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from visinstruct.core.store.database import Store
from visinstruct.core.store.snapshots import LedgerTally, UnitTally, score_counts
from visinstruct.tests.tui.support_monitor import run_pipeline, write_config


def test_tallies_match_a_scan_after_a_run(tmp_path: Path) -> None:
    db = run_pipeline(write_config(tmp_path))
    with Store(db) as store:
        tallied_scores = score_counts(store, 7.0)
        tallied_units = UnitTally("").count(store)
        tallied_calls = LedgerTally(1).counts(store)
    with sqlite3.connect(db) as conn:
        for table in ("call_tally", "score_tally", "unit_tally"):
            conn.execute(f"DROP TABLE {table}")  # the same store without them: the scans
    with Store(db) as store:
        assert score_counts(store, 7.0) == tallied_scores
        assert UnitTally("").count(store) == tallied_units > 0
        assert LedgerTally(1).counts(store) == tallied_calls
