"""One row per endpoint: instances, in flight of its limit, done, errors, throttles, latency, speed."""

from __future__ import annotations

from rich.text import Text
from visinstruct.tui.state import RunState
from visinstruct.tui.widgets.formatting import millis, per_second
from visinstruct.tui.widgets.rich_table import TableView

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
        rows = []
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
        if not rows:
            rows.append((Text("no calls yet", style="dim"), "", "", "", "", "", "", "", "", ""))
        self.show_rows(rows)
