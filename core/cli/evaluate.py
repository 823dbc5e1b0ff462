"""`visinstruct evaluate`: ours vs the GPT-4 baseline, as a table or one JSON object on stdout."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from visinstruct.core.cli.options import config_from_args, stop_on_signals, threshold_for
from visinstruct.core.errors import ExitCode, InputError
from visinstruct.core.evaluation.aggregate import Summary
from visinstruct.core.evaluation.evaluate import EvaluationReport, evaluate
from visinstruct.core.evaluation.wording import bias_text, interval_text, relative_text
from visinstruct.core.events import (
    CallFinished,
    EvaluationNotice,
    EvaluationStarted,
    Event,
    VerdictRecorded,
)
from visinstruct.core.pipeline.tally import counted, duration
from visinstruct.core.sanitize.redact import redact


def _say(message: str) -> None:
    print(redact(message), file=sys.stderr)


class _Talk:
    """Notices as notes on stderr; progress as a live line on a terminal, else a plain line
    every few seconds (cli/plain_progress.py)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        from visinstruct.core.cli.plain_progress import Ticker, progress_interval

        self.live = sys.stderr.isatty()
        self.lock = threading.Lock()
        self.open = False  # a progress line is on screen without its newline
        self.clock = clock
        self.started: tuple[float, int] | None = None  # (when, verdicts done then)
        self.done = self.total = self.calls = self.failed_calls = self.unparsed = 0
        self.ticker = None if self.live else Ticker(self.plain_line, progress_interval())

    def __call__(self, event: Event) -> None:
        with self.lock:
            if isinstance(event, EvaluationStarted):
                self.done, self.total = event.done_verdicts, event.total_verdicts
                self.started = (self.clock(), event.done_verdicts)
            elif isinstance(event, CallFinished):
                self.calls += 1
                self.failed_calls += event.status != "ok"
            elif isinstance(event, VerdictRecorded):
                self.done, self.total = event.done_verdicts, event.total_verdicts
                self.unparsed += not event.parsed
            if isinstance(event, EvaluationNotice):
                self._end_line()
                _say(f"note: {event.message}")
            elif isinstance(event, VerdictRecorded) and self.live:
                sys.stderr.write(f"\revaluated {event.done_verdicts:,}/{event.total_verdicts:,}")
                sys.stderr.flush()
                self.open = True

    def plain_line(self) -> str:
        """'progress: 40/200 verdicts (160 left) · 42 calls (2 failed) · ... · ETA 3m 10s'."""
        with self.lock:
            if self.started is None:
                return ""
            since, first = self.started
            elapsed = max(0.0, self.clock() - since)
            left = max(0, self.total - self.done)
            rate = (self.done - first) / elapsed if elapsed > 0 else 0.0
            eta = duration(left / rate) if rate > 0 else ("0.0s" if not left else "–")
            failed = f" ({self.failed_calls:,} failed)" if self.failed_calls else ""
            return (f"progress: {self.done:,}/{self.total:,} verdicts ({left:,} left) · "
                    f"{counted(self.calls, 'call')}{failed} · {self.unparsed:,} unparsed · "
                    f"elapsed {duration(elapsed)} · ETA {eta}")

    def __enter__(self) -> _Talk:
        if self.ticker is not None:
            self.ticker.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.ticker is not None:
            self.ticker.__exit__()
        with self.lock:
            self._end_line()

    def _end_line(self) -> None:
        if self.open:
            sys.stderr.write("\n")
            self.open = False


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(report: EvaluationReport) -> str:
    """The figures as a fixed-width table, one row per task and one overall."""
    header = (f"{'task':<18}{'n':>5}{'relative':>10}  {'95% interval':<17}{'wins':>5}{'ties':>5}"
              f"{'losses':>7}{'pos.bias':>9}{'unparsed':>9}")
    lines = [header]

    def row(name: str, s: Summary) -> str:
        # Worded as the app's evaluation screen words them (one module for both).
        return (f"{name:<18}{s.n:>5}{relative_text(s.relative_score):>10}  {interval_text(s):<17}"
                f"{s.wins:>5}{s.ties:>5}{s.losses:>7}{bias_text(s.position_bias):>9}"
                f"{s.unparsed:>9}")

    lines += [row(task, summary) for task, summary in report.by_task.items()]
    lines.append(row("overall", report.overall))
    return "\n".join(lines)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run (or resume) an evaluation and print its figures; exit 3 if stopped, 1 on failed calls."""
    from visinstruct.core.cli.stores import opened_store

    config = config_from_args(args)
    if args.sample is not None and args.sample < 0:
        raise InputError(f"--sample {args.sample}: give 0 (every image) or more")
    if not Path(config.db).is_file():
        raise InputError(f"{config.db}: no such store; run `visinstruct prepare` and "
                         "`visinstruct run` first, or pass --db")
    from visinstruct.core.models.credentials import check_aws_access

    models = [config.evaluation.model] + ([config.generation.model]
                                          if args.mode == "answers" else [])
    check_aws_access(config, models, hint="; or use an offline evaluator: "
                                          "--set evaluation.model=tiny")
    cancel = threading.Event()
    talk = _Talk()
    with talk, opened_store(config.db, for_writing=True) as store, \
            stop_on_signals(cancel, "no new comparisons", _say):
        threshold = threshold_for(args, store, config)
        config = replace(config, judge=replace(config.judge, threshold=threshold))
        report = evaluate(config, store, talk, cancel, mode=args.mode, sample=args.sample,
                          seed=args.seed)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(table(report))
    _say(f"{report.mode} mode, evaluator {report.model}: {counted(report.images, 'image')}, "
         f"{counted(report.units, '(image, task) unit')}, {counted(report.verdicts, 'verdict')} "
         f"({counted(report.new_calls, 'new call')}, {report.failed_calls:,} failed, "
         f"{counted(report.missing_images, 'image')} not shown); store: {config.db}")
    if report.status == "interrupted":
        _say("stopped: what was compared is saved; run the same command again to finish")
        return ExitCode.INTERRUPTED
    return ExitCode.FAILED if report.failed_calls else ExitCode.OK


def cmd_analyze(args: argparse.Namespace) -> int:
    """`visinstruct analyze`, which lives in analyze_cli."""
    from visinstruct.core.cli.analyze import cmd_analyze as run

    return int(run(args))
