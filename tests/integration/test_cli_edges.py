"""Commands meeting an unkind world: a full or closed stdout, SIGTERM, an absurd price."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from visinstruct.core.errors import ExitCode
from visinstruct.dataset import sample

CliResult = tuple[int, str, str]
RunCli = Callable[..., CliResult]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(run_cli: RunCli, tmp_path: Path) -> Path:
    db = tmp_path / "s.db"
    assert run_cli("prepare", "--db", db, "--coco-captions", sample.captions_path())[0] == 0
    return db


def test_a_full_stdout_is_one_line_and_exit_1(store: Path) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "visinstruct.core.cli", "status", "--db", str(store), "--json"],
            stdout=full, stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=60)
    assert done.returncode == ExitCode.FAILED
    assert done.stderr.strip().splitlines() == [
        "visinstruct: cannot write the output: No space left on device"]


def test_a_closed_stdout_is_refused_with_exit_2(store: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import os, sys, runpy; os.close(1); sys.stdout = None; "
         "sys.argv = ['visinstruct', 'export', '--db', sys.argv[1], '--out', '-']; "
         "runpy.run_module('visinstruct.core.cli', run_name='__main__')", str(store)],
        capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == ExitCode.BAD_INPUT
    assert len(done.stderr.strip().splitlines()) == 1 and "stdout is closed" in done.stderr


def test_sigterm_stops_a_command_like_ctrl_c(run_cli: RunCli, store: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from visinstruct.core.export import writers

    real = writers._swap_in_dir

    def terminated_mid_write(*args: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(writers, "_swap_in_dir", terminated_mid_write)
    out = tmp_path / "hf"
    code, _, err = run_cli("export", "--db", store, "--format", "hf", "--out", out)
    assert code == ExitCode.INTERRUPTED and "interrupted" in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name]  # no staging folder left
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handler is back


def test_status_json_never_prints_infinity(run_cli: RunCli, store: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from visinstruct.core.cli import status

    real = status.cost_report

    def overflowing(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        report = real(*args, **kwargs)  # type: ignore[arg-type]
        return replace(report, cost_usd=float("inf"), projected_cost_usd=float("nan"))

    monkeypatch.setattr(status, "cost_report", overflowing)
    code, out, _ = run_cli("status", "--db", store, "--json")
    assert code == ExitCode.OK
    report = json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert report["cost_usd"] is None and report["projected_cost_usd"] is None


def test_an_hf_export_with_nothing_kept_is_an_empty_dataset(run_cli: RunCli, store: Path,
                                                           tmp_path: Path) -> None:
    import datasets

    out = tmp_path / "hf"
    code, _, err = run_cli("export", "--db", store, "--format", "hf", "--out", out)
    assert code == ExitCode.OK, err
    saved = datasets.load_from_disk(str(out))
    assert saved.num_rows == 0
    assert saved.column_names == ["id", "image", "conversations", "task", "source", "provenance"]


def _sigterm_caught(pid: int) -> bool:
    """Whether process `pid` has a handler for SIGTERM (its SigCgt mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask, 16) & (1 << (signal.SIGTERM - 1)))


def _terminated_early(args: list[str], cwd: Path,
                      module: str = "visinstruct") -> subprocess.CompletedProcess[str]:
    """`python -m MODULE ARGS`, sent SIGTERM as soon as it can catch one: while the
    commands are still being imported, which is most of a short command's time."""
    process = subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "NO_COLOR": "1"})
    for _ in range(6000):
        if _sigterm_caught(process.pid) or process.poll() is not None:
            break
        threading.Event().wait(0.005)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(args, process.returncode, out, err)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_sigterm_while_the_commands_load_is_exit_3_for_hf_export_and_prepare(
        store: Path, tmp_path: Path) -> None:
    out = tmp_path / "hf"
    done = _terminated_early(["export", "--db", str(store), "--format", "hf", "--out",
                              str(out)], tmp_path)
    assert done.returncode == ExitCode.INTERRUPTED, done.stderr
    assert done.stderr.strip().splitlines() == ["visinstruct: interrupted"]
    assert not out.exists() and not [p for p in tmp_path.iterdir() if "tmp" in p.name]

    fresh = tmp_path / "fresh.db"
    done = _terminated_early(["prepare", "--db", str(fresh), "--coco-captions",
                              str(sample.captions_path())], tmp_path,
                             module="visinstruct.core.cli")
    assert done.returncode == ExitCode.INTERRUPTED, done.stderr
    assert done.stderr.strip().splitlines() == ["visinstruct: interrupted"]
    again = subprocess.run([sys.executable, "-m", "visinstruct", "prepare", "--db", str(fresh),
                            "--coco-captions", str(sample.captions_path())], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == ExitCode.OK, again.stderr


def test_sigterm_means_interrupted_before_the_commands_are_imported(
        capsys: pytest.CaptureFixture[str]) -> None:
    from visinstruct.core.errors import interruptible

    ran: list[str] = []

    def load_then_terminated() -> Callable[[], int]:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while "importing" the commands
        for _ in range(100):  # noted, not raised inside another library's import
            threading.Event().wait(0.001)
        return lambda: ran.append("the command") or 0

    previous = signal.getsignal(signal.SIGTERM)
    assert interruptible(load_then_terminated) == ExitCode.INTERRUPTED
    assert ran == [] and capsys.readouterr().err == "visinstruct: interrupted\n"
    assert signal.getsignal(signal.SIGTERM) is previous
    assert interruptible(lambda: lambda: 0) == ExitCode.OK  # the note does not outlive it
    # The console script's module loads the commands only inside its main().
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, visinstruct.entry; "
         "print(sorted(m for m in sys.modules if m.startswith('visinstruct.core.cli')))"],
        capture_output=True, text=True, timeout=60, check=True)
    assert loaded.stdout.strip() == "[]"
