"""Worker lanes: one row per call in flight, saying what each worker is waiting on."""

from __future__ import annotations

from rich.text import Text

from visinstruct.tui.state import RunState
from visinstruct.tui.widgets.formatting import duration
from visinstruct.tui.widgets.rich_table import TableView

COLUMNS = (("Time", 6), ("Stage", 10), ("Image", 8), ("Endpoint", 12), ("Task", None))


class WorkerLanes(TableView):
    """How long each call has been out, its stage, image, endpoint and task, oldest first."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(COLUMNS, **kwargs)

    def show(self, state: RunState, now: float) -> None:
        lanes = sorted(state.lanes.values(), key=lambda lane: (lane.started_at, lane.call_id))
        room = self.visible_rows()
        shown = lanes if len(lanes) <= room else lanes[:room - 1]
        rows = []
        for lane in shown:
            stage = f"{lane.stage} ×{lane.attempt}" if lane.attempt > 1 else lane.stage
            rows.append((duration(max(0.0, now - lane.started_at)), stage, str(lane.image_id),
                         lane.endpoint or "–", lane.task))
        if not lanes:
            rows.append(("", Text("idle", style="dim"), "", "", ""))
        self.show_rows(rows, more=len(lanes) - len(shown))
