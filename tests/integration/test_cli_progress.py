"""Progress without a terminal: `run --headless` and `evaluate` print a plain line to stderr at a
steady interval (VISINSTRUCT_PROGRESS_SECONDS, shortened here), read from a file as a log."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from visinstruct.core.errors import ExitCode
from visinstruct.core.events import CallFinished, ImageDone, PairsJudged, RunStarted
from visinstruct.core.pipeline.tally import RunTally, progress_line
from visinstruct.dataset import sample

RUN_LINE = re.compile(r"^progress: \d+/\d+ units \(\d+ left\) · \d+ calls( \(\d+ failed\))? · "
                      r"\d+ kept · errors: .+ · elapsed .+ · ETA .+$")
EVALUATE_LINE = re.compile(r"^progress: \d+/\d+ verdicts \(\d+ left\) · \d+ calls"
                           r"( \(\d+ failed\))? · \d+ unparsed · elapsed .+ · ETA .+$")


def write_config(folder: Path, latency: float) -> Path:
    """The bundled sample with its baseline; one scripted model, slowed to make a long run."""
    script = folder / "script.json"
    script.write_text(json.dumps({"latency": latency, "rules": []}), encoding="utf-8")
    config = folder / "run.toml"
    config.write_text(
        f'db = "{folder / "run.db"}"\n[source]\n'
        f'coco_captions = "{sample.captions_path()}"\n'
        f'coco_instances = "{sample.instances_path()}"\n'
        f'baseline = "{sample.baseline_path()}"\n'
        '[generation]\nmodel = "fake"\n[judge]\nmodel = "fake"\n[evaluation]\nmodel = "fake"\n'
        f'[models.fake]\nbackend = "scripted"\nscript = "{script}"\nmax_in_flight = 2\n',
        encoding="utf-8")
    return config


def cli_to_log(folder: Path, log: Path, *args: str, seconds: str = "0.1") -> int:
    """The CLI in a child process with stderr to a file (no terminal) and stdout discarded."""
    with log.open("w", encoding="utf-8") as stderr:
        return subprocess.run(
            [sys.executable, "-m", "visinstruct.core.cli", *args], cwd=folder,
            stdout=subprocess.DEVNULL, stderr=stderr, timeout=120, check=False,
            env={**os.environ, "NO_COLOR": "1", "VISINSTRUCT_PROGRESS_SECONDS": seconds},
        ).returncode


def test_run_and_evaluate_write_progress_lines_to_a_log(tmp_path: Path) -> None:
    config = write_config(tmp_path, latency=0.1)
    log = tmp_path / "run.log"
    assert cli_to_log(tmp_path, log, "run", "--headless", "--config", str(config),
                      "--limit", "4") == ExitCode.OK, log.read_text()
    lines = log.read_text(encoding="utf-8").splitlines()
    progress = [line for line in lines if line.startswith("progress:")]
    # 24 calls of 0.1 s, two at a time: well over a second, so several 0.1 s lines.
    assert len(progress) >= 2, lines
    assert all(RUN_LINE.match(line) for line in progress), progress
    assert any(line.startswith("run 1 finished") for line in lines)  # the summary still closes

    log = tmp_path / "evaluate.log"
    assert cli_to_log(tmp_path, log, "evaluate", "--config", str(config),
                      "--sample", "4") == ExitCode.OK, log.read_text()
    lines = log.read_text(encoding="utf-8").splitlines()
    progress = [line for line in lines if line.startswith("progress:")]
    assert len(progress) >= 2, lines
    assert all(EVALUATE_LINE.match(line) for line in progress), progress
    assert not any("\r" in line for line in lines)  # no terminal line redraws in a log


@pytest.mark.parametrize("value", ["0", "-3", "soon", "nan"])
def test_a_bad_progress_interval_is_refused_before_any_work(tmp_path: Path, value: str) -> None:
    config = write_config(tmp_path, latency=0)
    log = tmp_path / "run.log"
    code = cli_to_log(tmp_path, log, "run", "--headless", "--config", str(config), seconds=value)
    assert code == ExitCode.BAD_INPUT
    text = log.read_text(encoding="utf-8")
    assert "VISINSTRUCT_PROGRESS_SECONDS" in text and len(text.strip().splitlines()) == 1
    assert not (tmp_path / "run.db").exists()


def test_a_resumed_run_counts_what_was_left() -> None:
    tally = RunTally()
    tally.add(RunStarted(2, 6, 2, 1, ("detail",), "m", "m"), 100.0)
    tally.add(CallFinished(1, "generate", 1, "detail", "m", "e", 1, "ok", 10.0, 1, 1), 101.0)
    tally.add(CallFinished(2, "judge", 1, "detail", "m", "e", 1, "error", 10.0, 1, 1,
                           error_kind="transient"), 101.5)
    tally.add(PairsJudged(1, 1, "detail", (8.0, 3.0), 1, 7.0), 102.0)
    tally.add(ImageDone(1, "detail", True, 3, 6), 102.0)
    line = progress_line(tally.figures(102.0))
    assert line.startswith("progress: 3 left of 6 units (1 done this run) · 2 calls (1 failed) · "
                           "1 kept · errors: transient 1 · elapsed 2.0s · ETA "), line
