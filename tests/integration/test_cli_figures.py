"""What the CLI says about a run and a store: JSON events, the status report, backups, and the
shared tally's wording of the same figures."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from visinstruct.core.errors import DownloadError, ExitCode
from visinstruct.core.events import CallFinished, ImageDone, PairsJudged, RunFinished, RunStarted
from visinstruct.core.pipeline.tally import RunTally, units_text
from visinstruct.core.store.database import Store
from visinstruct.core.store.run_config import stored_run_config
from visinstruct.tests.integration.test_cli_export_status import scripted_run


def test_json_events_carry_a_time_stamp_and_rounded_figures(run_cli, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    scripted_run(run_cli, tmp_path)
    code, out, err = run_cli("run", "--headless", "--json", "--config", config)
    assert code == ExitCode.OK, err
    events = [json.loads(line) for line in out.splitlines()]
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", e["at"]) for e in events)
    for event in events:
        for key, value in event.items():
            if key.endswith("_ms") and isinstance(value, float):
                assert value == round(value, 1), (key, value)


def test_status_reads_as_text_with_dates(run_cli, tmp_path: Path) -> None:
    db = scripted_run(run_cli, tmp_path)
    code, out, err = run_cli("status", "--db", db)
    assert code == ExitCode.OK, err
    assert "{" not in out  # no Python dict
    assert re.search(r"started\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", out)
    assert re.search(r"last_run\s+run 1 finished, 72 units", out)


def test_each_run_records_the_config_it_ran_with(run_cli, tmp_path: Path) -> None:
    db = scripted_run(run_cli, tmp_path)
    with Store(db) as store:
        found = stored_run_config(store)
    assert found is not None
    run_id, config = found
    assert run_id == 1 and config.generation.model == "fake" and config.judge.model == "fake"
    assert config.models["fake"].backend == "scripted"


def test_backup_copies_what_is_still_in_the_wal(run_cli, tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    store = Store(db)
    try:
        store.set_meta("marker", "in the wal")  # committed, not checkpointed: the WAL holds it
        assert db.with_name("live.db-wal").stat().st_size > 0
        code, out, err = run_cli("backup", "--db", db, "--out", tmp_path / "copy.db")
    finally:
        store.close()
    assert code == ExitCode.OK, err
    assert out.strip() == str(tmp_path / "copy.db")
    with sqlite3.connect(tmp_path / "copy.db") as copy:
        assert copy.execute("SELECT value FROM meta WHERE key = 'marker'").fetchone() == (
            "in the wal",)
    assert not (tmp_path / "copy.db-wal").exists()


def test_backup_of_a_missing_store_is_bad_input(run_cli, tmp_path: Path) -> None:
    code, _, err = run_cli("backup", "--db", tmp_path / "nope.db", "--out", tmp_path / "c.db")
    assert code == ExitCode.BAD_INPUT and "no such store" in err


def test_a_failed_download_is_a_failure_not_bad_input() -> None:
    assert DownloadError("HTTP 503").exit_code == ExitCode.FAILED


def test_the_tally_finishes_with_the_runs_own_figures() -> None:
    tally = RunTally()
    tally.add(RunStarted(7, 3, 0, 1, ("detail",), "m", "m"), 100.0)
    tally.add(CallFinished(1, "generate", 1, "detail", "m", "e", 1, "ok", 10.0, 1, 1), 101.0)
    tally.add(PairsJudged(1, 1, "detail", (8.0, None, 3.0), 1, 7.0), 101.0)
    tally.add(ImageDone(1, "detail", True, 1, 3), 102.0)
    running = tally.figures(102.0)
    assert (running.judged_pairs, running.unjudged_pairs, running.kept_pairs) == (2, 1, 1)
    assert "units/s" in units_text(running) and "ETA" in units_text(running)
    tally.add(RunFinished(7, "finished", 3, 3, 0, 9, 4, 0, 6, 0, 4.0, 0.0), 104.0)
    done = tally.figures(104.0)
    assert (done.done_units, done.total_units, done.status) == (3, 3, "finished")
    assert units_text(done).startswith("3/3 units") and "ETA" not in units_text(done)


def test_a_followed_run_is_timed_from_its_own_start() -> None:
    """Read from the store 37 s into a run that has done 72 units: 1.9 units/s at once, not a
    rate counted from when the reader first looked."""
    tally = RunTally()
    tally.restore(1, "running", 100, 72, 0, 1000.0, None, 1037.0, start_done=0,
                  pictures_sent=9)
    first = tally.figures(1037.0)
    assert first.units_per_s == pytest.approx(72 / 37) and first.pictures_sent == 9
    assert units_text(first).startswith("72/100 units · 1.9 units/s")
    tally.restore(1, "running", 100, 80, 0, 1000.0, None, 1041.0, start_done=0,
                  pictures_sent=12)
    # Then over the recent window, as a live run's: 8 units in the last 4 s.
    assert tally.figures(1041.0).units_per_s == pytest.approx(2.0)
    assert tally.figures(1041.0).pictures_sent == 12

    # A resumed run counts its own units (40 were done before it) from its own start...
    resumed = RunTally()
    resumed.restore(2, "running", 100, 72, 0, 1000.0, None, 1016.0, start_done=40)
    assert resumed.figures(1016.0).units_per_s == pytest.approx(2.0)
    # ... and once ended, its own average.
    resumed.restore(2, "finished", 100, 100, 0, 1000.0, 1030.0, 1050.0, start_done=40)
    assert resumed.figures(1050.0).units_per_s == pytest.approx(60 / 30)

    # A run from before the start was recorded: counted from the first read, as before.
    older = RunTally()
    older.restore(3, "running", 100, 50, 0, 1000.0, None, 1037.0)
    assert older.figures(1037.0).units_per_s is None and older.start_done == 50
