"""Headless run display: a Rich progress panel on stderr, or one JSON event per line on stdout.

Only the CLI imports this module; the engine (pipeline and stages) never does.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from visinstruct.core.events import (
    BatchJobUpdated,
    BatchNotice,
    BatchRecordsWaiting,
    EndpointHealth,
    Event,
    PictureUnusable,
    RunFinished,
)
from visinstruct.core.pipeline.tally import (
    RunTally,
    calls_text,
    counted,
    duration,
    money,
    progress_line,
    run_pairs_text,
    units_text,
)
from visinstruct.core.sanitize.redact import redact


def json_event(event: Event, at: float) -> dict[str, Any]:
    """An event as one JSON object: its kind, an ISO time stamp, and floats to sensible digits."""
    body: dict[str, Any] = {"event": event.kind,
                            "at": datetime.fromtimestamp(at, UTC).isoformat(
                                timespec="milliseconds")}
    for key, value in event.to_dict().items():
        if key == "event":
            continue
        if isinstance(value, str):
            # Each text field is redacted as itself (header patterns need their real quotes).
            value = redact(value)
        if isinstance(value, float):
            # Milliseconds to a tenth, money to a hundredth of a cent, the rest to 3 digits.
            value = round(value, 1 if key.endswith("_ms") else 6 if key.endswith("_usd") else 3)
        body[key] = value
    return body


class JsonLines:
    """Prints every event as one JSON object per line on stdout."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        line = json.dumps(json_event(event, time.time()), default=str)
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def __enter__(self) -> JsonLines:
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()


class RichProgress:
    """Units, pairs, calls, rates, ETA, cost and errors on stderr, from the shared RunTally.

    On a terminal a live panel; otherwise (stderr to a file or a pipe) a plain progress line
    every few seconds (cli/plain_progress.py), and the panel's last frame at the end.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        from rich.console import Console

        from visinstruct.core.cli.plain_progress import Ticker, progress_interval

        self.console = Console(stderr=True)
        self.ticker = (None if self.console.is_terminal
                       else Ticker(self.plain_line, progress_interval()))
        self.clock = clock
        self._lock = threading.Lock()
        self.tally = RunTally()
        self.endpoints: dict[str, EndpointHealth] = {}
        self.finished: RunFinished | None = None
        self.batch_jobs: dict[str, BatchJobUpdated] = {}
        self.waiting: dict[str, BatchRecordsWaiting] = {}
        self.notices: list[BatchNotice] = []
        self._live: Any = None

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.tally.add(event, self.clock())
            if isinstance(event, EndpointHealth):
                self.endpoints[f"{event.model}/{event.endpoint}"] = event
            elif isinstance(event, RunFinished):
                self.finished = event
            elif isinstance(event, BatchJobUpdated):
                self.batch_jobs[event.arn] = event
            elif isinstance(event, BatchRecordsWaiting):
                self.waiting[event.stage] = event
            elif isinstance(event, BatchNotice):
                self.notices.append(event)
        if isinstance(event, BatchNotice):
            # Printed above the live display, outside the lock its refresh takes.
            self.console.print(f"{event.stage} ({event.model}): {event.message}")
        elif isinstance(event, PictureUnusable):
            self.console.print(f"picture not sent, image {event.image_id} skipped: "
                               f"{event.path}: {event.problem}", markup=False,
                               highlight=False, soft_wrap=True)  # the path stays whole

    def plain_line(self) -> str:
        """The figures as one log line; nothing before the run has started."""
        with self._lock:
            if self.tally.run_id is None:
                return ""
            return progress_line(self.tally.figures(self.clock()))

    def render(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        with self._lock:
            figures = self.tally.figures(self.clock())
            grid = Table.grid(padding=(0, 2))
            grid.add_row(ProgressBar(total=max(1, figures.total_units),
                                     completed=figures.done_units, width=40),
                         units_text(figures), f"elapsed {duration(figures.elapsed_s)}")
            grid.add_row("pairs", run_pairs_text(figures), calls_text(figures))
            errors = ", ".join(f"{k}: {v}" for k, v in figures.errors) or "none"
            grid.add_row("errors", errors, "")
            grid.add_row("cost", f"{money(figures.cost_usd)} so far",
                         f"projected {money(figures.projected_cost_usd)}")
            if self.finished is not None:
                grid.add_row("store", store_text(self.finished), "")
            for name, health in sorted(self.endpoints.items()):
                grid.add_row(name,
                             f"{health.in_flight}/{health.limit} in flight, {health.done:,} done",
                             f"{health.health}, {health.throttles} throttles, "
                             f"p50 {health.p50_ms:,.0f} ms")
            for row in batch_rows(self.batch_jobs.values(), time.time()):
                grid.add_row(*row)
            for wait in self.waiting.values():
                grid.add_row(f"{wait.stage} waiting", f"{wait.records:,} records < min_records "
                             f"{wait.min_records:,}", "on_demand_remainder = false")
            return grid

    def __enter__(self) -> RichProgress:
        from rich.live import Live

        self._live = Live(get_renderable=self.render, console=self.console,
                          refresh_per_second=4, transient=False)
        self._live.__enter__()
        if self.ticker is not None:
            self.ticker.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.ticker is not None:
            self.ticker.__exit__()
        if self._live is not None:
            self._live.refresh()  # the last frame shows the closing figures, as the summary does
            self._live.__exit__(None, None, None)
            if not self.console.is_terminal:
                self.console.line()  # the last frame ends without a newline when not a terminal

    def summary(self, event: RunFinished) -> None:
        """The closing lines after a run."""
        with self._lock:
            figures = self.tally.figures(self.clock())
        self.console.print(
            f"run {event.run_id} {event.status}: {units_text(figures)}; "
            f"{run_pairs_text(figures)}; {calls_text(figures)}; "
            f"in {duration(event.elapsed_s)}; cost {money(event.cost_usd)}")
        self.console.print(f"store: {store_text(event)}")


def store_text(event: RunFinished) -> str:
    """'412 pairs, 200 kept, 190 dropped, 3 parse failures, 830 calls (4 failed)'.

    The whole store after a run; dropped by a gate, the judge or a person (`status` splits it).
    """
    return (f"{counted(event.pairs, 'pair')}, {event.kept_pairs:,} kept, "
            f"{event.dropped_pairs:,} dropped, {counted(event.parse_failures, 'parse failure')}, "
            f"{counted(event.calls, 'call')} ({event.failed_calls:,} failed)")


def batch_rows(jobs: Any, now: float) -> list[tuple[str, str, str]]:
    """One row per batch job: model and records, status and age; no ETA until it ends."""
    rows = []
    for job in jobs:
        age = max(0.0, now - job.submitted_at)
        clock = f"{int(age // 3600)}h{int(age % 3600 // 60):02d}m" if age >= 3600 else \
            f"{int(age // 60)}m{int(age % 60):02d}s"
        done = job.ok_records + job.error_records
        outcome = f", {job.ok_records:,} ok, {job.error_records:,} errors" if done else ""
        eta = "" if job.status in ("Completed", "PartiallyCompleted", "Failed", "Stopped",
                                   "Expired") else ", ETA unknown"
        rows.append((f"batch {job.stage} {job.job_id}",
                     f"{job.model}: {job.records:,} records{outcome}",
                     f"{job.status}, {clock} old{eta}"))
    return rows
