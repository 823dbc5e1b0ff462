"""Refusals before any work: files that are not our store, a newer store, bad overrides and
configs."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_cli_prepare import RunCli, assert_one_line_naming, captions300
from visinstruct.core.errors import ExitCode
from visinstruct.core.store.schema import LATEST_VERSION
from visinstruct.dataset import sample


def _foreign_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.close()


def _not_sqlite(path: Path) -> None:
    path.write_text("id,total\n1,9.99\n")


@pytest.mark.parametrize("command", ["prepare", "status", "export"])
@pytest.mark.parametrize("make", [_foreign_sqlite, _not_sqlite], ids=["other-tables", "not-sqlite"])
def test_a_file_that_is_not_a_visinstruct_store_is_refused(
    command: str, make: Callable[[Path], None], run_cli: RunCli, real_data: Path, tmp_path: Path
) -> None:
    db = tmp_path / "other.db"
    make(db)
    before = db.read_bytes()
    extra: dict[str, list[object]] = {
        "prepare": ["--coco-captions", captions300(real_data)],
        "status": ["--json"],
        "export": ["--out", tmp_path / "out.json"],
    }
    code, out, err = run_cli(command, "--db", db, *extra[command])
    assert code == ExitCode.BAD_INPUT
    assert out == ""
    assert_one_line_naming(err, db)
    assert db.read_bytes() == before
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("command", ["prepare", "status"])
def test_a_store_from_a_newer_version_is_refused(
    command: str, run_cli: RunCli, real_data: Path, tmp_path: Path
) -> None:
    db = tmp_path / "store.db"
    assert run_cli("prepare", "--db", db, "--coco-captions", sample.captions_path())[0] == 0
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                     (str(LATEST_VERSION + 1),))
    conn.close()
    extra = ["--coco-captions", captions300(real_data)] if command == "prepare" else []
    code, _, err = run_cli(command, "--db", db, *extra)
    assert code == ExitCode.BAD_INPUT
    assert_one_line_naming(err, db, "newer")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 24
    conn.close()


@pytest.mark.parametrize(("override", "named"), [
    ("judge.treshold=8", "threshold"), ("judge.threshold=high", "high"), ("judge", "judge"),
    ("judge.threshold=11", "threshold"), ("nosuch.key=1", "nosuch.key"),
])
def test_a_bad_set_override_is_refused_before_any_work(
    override: str, named: str, run_cli: RunCli, real_data: Path, tmp_path: Path
) -> None:
    db = tmp_path / "store.db"
    code, _, err = run_cli("prepare", "--db", db, "--coco-captions", captions300(real_data),
                           "--set", override)
    assert code == ExitCode.BAD_INPUT
    assert_one_line_naming(err, named)
    assert not db.exists()


@pytest.mark.parametrize("command", ["status", "export"])
def test_a_bad_set_override_is_refused_with_an_explicit_db(
    command: str, run_cli: RunCli, tmp_path: Path
) -> None:
    db = tmp_path / "store.db"
    assert run_cli("prepare", "--db", db, "--coco-captions", sample.captions_path())[0] == 0
    extra = ["--out", tmp_path / "out.json"] if command == "export" else []
    code, _, err = run_cli(command, "--db", db, "--set", "judge.treshold=8", *extra)
    assert code == ExitCode.BAD_INPUT
    assert_one_line_naming(err, "treshold", "threshold")


def test_a_bad_config_file_is_refused_before_any_work(
    run_cli: RunCli, real_data: Path, tmp_path: Path
) -> None:
    config = tmp_path / "run.toml"
    config.write_text('db = "store.db"\n[generation]\nmodel = "mixtral"\n')
    code, _, err = run_cli("prepare", "--config", config, "--coco-captions", captions300(real_data))
    assert code == ExitCode.BAD_INPUT
    assert_one_line_naming(err, config, "mixtral")
    assert not (tmp_path / "store.db").exists()


@pytest.mark.parametrize("threshold", ["11", "0", "-1"])
def test_status_threshold_out_of_range(threshold: str, run_cli: RunCli, tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    assert run_cli("prepare", "--db", db, "--coco-captions", sample.captions_path())[0] == 0
    code, out, err = run_cli("status", "--db", db, "--threshold", threshold)
    assert code == ExitCode.BAD_INPUT and out == ""
    assert_one_line_naming(err, "--threshold")


def test_status_of_a_missing_store(run_cli: RunCli, tmp_path: Path) -> None:
    db = tmp_path / "nothing.db"
    code, out, err = run_cli("status", "--db", db)
    assert code == ExitCode.BAD_INPUT and out == ""
    assert_one_line_naming(err, db)
    assert not db.exists()


def test_no_command_starts_the_app_with_the_given_arguments_only(
    run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from visinstruct.core import cli

    started: list[argparse.Namespace] = []
    monkeypatch.setitem(cli.COMMANDS, "tui", lambda args: started.append(args) or 0)
    # main([]) must not fall back to the host process's own arguments.
    monkeypatch.setattr(sys, "argv", ["pytest", "--not-a-visinstruct-flag"])
    assert run_cli()[0] == ExitCode.OK
    assert len(started) == 1 and started[0].command == "tui"


def test_the_apps_flags_without_a_command_open_the_app(
    run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from visinstruct.core import cli

    started: list[argparse.Namespace] = []
    monkeypatch.setitem(cli.COMMANDS, "tui", lambda args: started.append(args) or 0)
    assert run_cli("--db", tmp_path / "s.db")[0] == ExitCode.OK
    assert len(started) == 1 and started[0].command == "tui"
    assert Path(started[0].db) == tmp_path / "s.db"
