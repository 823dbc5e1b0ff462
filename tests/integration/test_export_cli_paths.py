"""`visinstruct export --out` onto odd paths: stdout, FIFOs, devices and symlinks."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_cli_export_status import scripted_run
from visinstruct.core.errors import ExitCode

CliResult = tuple[int, str, str]
RunCli = Callable[..., CliResult]


@pytest.fixture
def run_db(run_cli: RunCli, tmp_path: Path) -> Path:
    return scripted_run(run_cli, tmp_path)


@pytest.mark.parametrize("fmt", ["llava", "jsonl"])
def test_out_dash_writes_the_export_to_stdout_only(
    fmt: str, run_cli: RunCli, run_db: Path, tmp_path: Path
) -> None:
    code, stdout, err = run_cli("export", "--db", run_db, "--format", fmt, "--out", "-")
    assert code == ExitCode.OK, err
    records = json.loads(stdout) if fmt == "llava" else [
        json.loads(line) for line in stdout.splitlines()]
    assert records and all(r["conversations"][0]["value"].startswith("<image>") for r in records)
    assert "to stdout" in err
    file_copy = tmp_path / f"copy.{fmt}"
    assert run_cli("export", "--db", run_db, "--format", fmt, "--out", file_copy)[0] == 0
    assert file_copy.read_text(encoding="utf-8").strip() == stdout.strip()
    assert not (tmp_path / "-").exists()


def test_a_fifo_is_refused_with_exit_2(run_cli: RunCli, run_db: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    code, stdout, err = run_cli("export", "--db", run_db, "--out", fifo)
    assert code == ExitCode.BAD_INPUT and stdout == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(fifo) in lines[0] and "FIFO" in lines[0]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_a_device_is_refused_and_left_alone(run_cli: RunCli, run_db: Path) -> None:
    before = os.stat("/dev/full")
    code, _, err = run_cli("export", "--db", run_db, "--out", "/dev/full")
    assert code == ExitCode.BAD_INPUT and "device" in err
    after = os.stat("/dev/full")
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (
        before.st_ino, before.st_rdev)


def test_a_symlink_keeps_pointing_at_the_refreshed_target(
    run_cli: RunCli, run_db: Path, tmp_path: Path
) -> None:
    target = tmp_path / "releases" / "v1.json"
    target.parent.mkdir()
    target.write_text("[]", encoding="utf-8")
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    code, stdout, err = run_cli("export", "--db", run_db, "--out", link)
    assert code == ExitCode.OK, err
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert json.loads(target.read_text(encoding="utf-8"))
    assert stdout.strip() == str(link)
