"""Shared fixtures: the real data folder, a temporary store, and the CLI run in or out of
process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from visinstruct.core.store.database import Store

REPO_ROOT = Path(__file__).resolve().parents[1]
# Real fixtures copied into the repository (tests/data/README.md names each file's origin):
# the repository alone passes its tests, with nothing beside it.
REAL_DATA = REPO_ROOT / "tests" / "data"

CliResult = tuple[int, str, str]

# Child processes (a fake server run as a script, the CLI in a subprocess) import the
# loopback fakes as `tests.fakes` too, so the repository root goes on their path.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)


@pytest.fixture
def real_data() -> Path:
    """The real fixtures folder (COCO annotations, GPT-4 baseline answers, judge outputs)."""
    return REAL_DATA


@pytest.fixture
def tmp_store(tmp_path: Path) -> Iterator[Store]:
    """A fresh store in this test's own folder, closed afterwards."""
    store = Store(tmp_path / "store.db")
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., CliResult]]:
    """Call `visinstruct.core.cli.main` in-process; returns (exit code, stdout, stderr)."""
    from visinstruct.core import cli

    # `run --headless` installs its own SIGINT/SIGTERM handlers; put pytest's back afterwards.
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def call(*args: str | os.PathLike[str]) -> CliResult:
        capsys.readouterr()
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as exc:  # argparse refusing a flag
            code = exc.code if isinstance(exc.code, int) else 2
        out, err = capsys.readouterr()
        return int(code), out, err

    try:
        yield call
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@pytest.fixture
def run_cli_subprocess(tmp_path: Path) -> Callable[..., CliResult]:
    """Run `python -m visinstruct.core.cli ...` in a child process started in tmp_path."""

    def call(*args: str | os.PathLike[str], cwd: Path | None = None,
             timeout: float = 60) -> CliResult:
        completed = subprocess.run(
            [sys.executable, "-m", "visinstruct.core.cli", *(str(a) for a in args)],
            cwd=cwd or tmp_path, capture_output=True, text=True, timeout=timeout, check=False,
            env={**os.environ, "NO_COLOR": "1"},
        )
        return completed.returncode, completed.stdout, completed.stderr

    return call
