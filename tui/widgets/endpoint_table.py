"""One row per endpoint: instances, in flight of its limit, done, errors, throttles, latency,
speed."""

from __future__ import annotations

import time

from rich.text import Text

from visinstruct.tui.state import RunState
from visinstruct.tui.widgets.formatting import millis, per_second
from visinstruct.tui.widgets.rich_table import Cell, TableView

HEALTH_STYLE = {"healthy": "green", "degraded": "yellow", "down": "bold red"}
# Short headers so the table fits 80 columns: instances, in flight/limit, errors, throttles.
COLUMNS = (("Endpoint", None), ("Inst", 4), ("Flight", 6), ("Done", 7), ("Err", 4), ("Thr", 4),
           ("p50", 5), ("p95", 5), ("Tok/s", 6), ("Health", 8))


class EndpointTable(TableView):
    """The per-endpoint figures of the run."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(COLUMNS, **kwargs)

    def show(self, state: RunState, now: float) -> None:
        models = {model for model, _ in state.endpoints}
        rows: list[tuple[Cell, ...]] = []
        for key, stats in state.endpoint_rows():
            name = stats.endpoint or "–"
            if len(models) > 1:
                name = f"{stats.model}:{name}"
            in_flight = f"{stats.in_flight}/{stats.limit}" if stats.limit is not None \
                else str(stats.in_flight)
            rows.append((
                name, str(stats.instances), in_flight, f"{stats.done:,}",
                Text(f"{stats.errors:,}", style="red" if stats.errors else ""),
                Text(f"{stats.throttles:,}", style="yellow" if stats.throttles else ""),
                millis(stats.p50_ms), millis(stats.p95_ms),
                per_second(state.tokens_per_second(key, now), ""),
                Text(stats.health, style=HEALTH_STYLE.get(stats.health, "")),
            ))
        rows += batch_job_rows(state, now)
        if not rows:
            rows.append((Text("no calls yet", style="dim"), "", "", "", "", "", "", "", "", ""))
        self.show_rows(rows)


JOB_STYLE = {"Completed": "green", "PartiallyCompleted": "yellow", "Failed": "bold red",
             "Stopped": "yellow", "Expired": "bold red"}


def batch_job_rows(state: RunState, now: float) -> list[tuple[Cell, ...]]:
    """A row per Bedrock batch job: model and records, ok and failed records, age, status."""
    rows: list[tuple[Cell, ...]] = []
    for job in state.batch_jobs.values():
        age = max(0.0, time.time() - job.submitted_at)
        clock = f"{age / 3600:.1f}h" if age >= 3600 else f"{age / 60:.0f}m"
        rows.append((
            f"{job.model}:batch {job.stage} {job.job_id} ({job.records:,} rec)", "", "",
            f"{job.ok_records:,}",
            Text(f"{job.error_records:,}", style="red" if job.error_records else ""),
            # Age under p50; no ETA until the job ends (Bedrock gives no progress figure).
            "", clock, "" if job.status in JOB_STYLE else "ETA ?", "",
            Text(job.status, style=JOB_STYLE.get(job.status, "cyan")),
        ))
    return rows
