"""Headless run display: a Rich progress panel on stderr, or one JSON event per line on stdout.

Only the CLI imports this module; the engine (pipeline and stages) never does.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from typing import Any

from visinstruct.core.text.redact import redact
from visinstruct.core.events import (
    BatchJobUpdated,
    BatchNotice,
    BatchRecordsWaiting,
    CallFinished,
    CostUpdated,
    EndpointHealth,
    Event,
    ImageDone,
    PairsJudged,
    RunFinished,
    RunStarted,
)


class JsonLines:
    """Prints every event as one JSON object per line on stdout."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        # Each text field is redacted as itself (header patterns need their real quotes).
        fields = {key: redact(value) if isinstance(value, str) else value
                  for key, value in event.to_dict().items()}
        line = json.dumps(fields, default=str)
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def __enter__(self) -> "JsonLines":
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()


class RichProgress:
    """Units done of total, pairs kept, calls per second, ETA, cost and errors by kind, on stderr."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self._lock = threading.Lock()
        self.total = 0
        self.done = 0
        self.start_done = 0
        self.kept = 0
        self.pairs = 0
        self.calls = 0
        self.errors: Counter[str] = Counter()
        self.endpoints: dict[str, EndpointHealth] = {}
        self.cost: CostUpdated | None = None
        self.batch_jobs: dict[str, BatchJobUpdated] = {}
        self.waiting: dict[str, BatchRecordsWaiting] = {}
        self.notices: list[BatchNotice] = []
        self.started = time.monotonic()
        self._live: Any = None

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, RunStarted):
                self.total, self.done, self.start_done = (event.total_units, event.done_units,
                                                          event.done_units)
                self.started = time.monotonic()
            elif isinstance(event, ImageDone):
                self.done = max(self.done, event.done_units)
            elif isinstance(event, PairsJudged):
                self.kept += event.kept
                self.pairs += len(event.scores)
            elif isinstance(event, CallFinished):
                self.calls += 1
                if event.status != "ok":
                    self.errors[event.error_kind or "error"] += 1
            elif isinstance(event, EndpointHealth):
                self.endpoints[f"{event.model}/{event.endpoint}"] = event
            elif isinstance(event, CostUpdated):
                self.cost = event
            elif isinstance(event, BatchJobUpdated):
                self.batch_jobs[event.arn] = event
            elif isinstance(event, BatchRecordsWaiting):
                self.waiting[event.stage] = event
            elif isinstance(event, BatchNotice):
                self.notices.append(event)
        if isinstance(event, BatchNotice):
            # Printed above the live display, outside the lock its refresh takes.
            self.console.print(f"{event.stage} ({event.model}): {event.message}")

    def render(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        with self._lock:
            elapsed = max(1e-6, time.monotonic() - self.started)
            rate = (self.done - self.start_done) / elapsed
            remaining = max(0, self.total - self.done)
            eta = f"{remaining / rate:,.0f}s" if rate > 0 else "-"
            grid = Table.grid(padding=(0, 2))
            grid.add_row(ProgressBar(total=max(1, self.total), completed=self.done, width=40),
                         f"{self.done:,}/{self.total:,} units", f"ETA {eta}")
            grid.add_row("pairs kept", f"{self.kept:,} of {self.pairs:,} judged this run",
                         f"{self.calls / elapsed:,.1f} calls/s")
            errors = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())) or "none"
            grid.add_row("errors", errors, "")
            if self.cost is not None:
                projected = (f"${self.cost.projected_cost_usd:,.2f}"
                             if self.cost.projected_cost_usd is not None else "-")
                grid.add_row("cost", f"${self.cost.cost_usd:,.4f} so far", f"projected {projected}")
            for name, health in sorted(self.endpoints.items()):
                grid.add_row(name, f"{health.in_flight}/{health.limit} in flight, {health.done:,} done",
                             f"{health.health}, {health.throttles} throttles, p50 {health.p50_ms:,.0f} ms")
            for row in batch_rows(self.batch_jobs.values(), time.time()):
                grid.add_row(*row)
            for wait in self.waiting.values():
                grid.add_row(f"{wait.stage} waiting", f"{wait.records:,} records < min_records "
                             f"{wait.min_records:,}", "on_demand_remainder = false")
            return grid

    def __enter__(self) -> "RichProgress":
        from rich.live import Live

        self._live = Live(get_renderable=self.render, console=self.console,
                          refresh_per_second=4, transient=False)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            if not self.console.is_terminal:
                self.console.line()  # the last frame ends without a newline when not a terminal

    def summary(self, event: RunFinished) -> None:
        """The closing lines after a run."""
        self.console.print(
            f"run {event.run_id} {event.status}: {event.done_units:,}/{event.total_units:,} units, "
            f"{event.failed_units:,} failed; {event.pairs:,} pairs, "
            f"{event.dropped_pairs:,} stopped by the gates, {event.kept_pairs:,} kept, "
            f"{event.parse_failures:,} parse failures; {event.calls:,} calls "
            f"({event.failed_calls:,} failed) in {event.elapsed_s:,.1f}s; "
            f"cost ${event.cost_usd:,.4f}")


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
