"""The latest judged conversations with their scores; enter opens one in review."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from visinstruct.core.store.snapshots import JudgedSample
from visinstruct.core.store.verdicts import is_kept_score
from visinstruct.tui.messages import SampleChosen
from visinstruct.tui.state import RunState
from visinstruct.tui.widgets.formatting import shorten


def scores_text(sample: JudgedSample, threshold: float) -> Text:
    """Each pair's score, green when kept, red when dropped, '?' when unreadable."""
    text = Text()
    for number, score in enumerate(sample.scores):
        if number:
            text.append(" ")
        if score is None:
            text.append("?", style="dim")
        else:
            text.append(f"{score:g}", style="green" if score >= threshold else "red")
    return text


class LatestSamples(DataTable[Text | str]):
    """Image, task, scores, kept and the first question of each recently judged conversation."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, id=id, classes=classes)
        self._shown: tuple[object, ...] | None = None
        self._samples: dict[str, JudgedSample] = {}

    def on_mount(self) -> None:
        for name in ("Image", "Task", "Scores", "Kept", "First question"):
            self.add_column(name, key=name)

    def show(self, state: RunState) -> None:
        samples = list(state.samples)
        signature = (tuple((s.generation_id, s.question, s.scores) for s in samples)
                     + (state.threshold,))
        if signature == self._shown:
            return
        self._shown = signature
        selected = self._selected_key()
        self.clear()
        self._samples = {}
        for sample in samples:
            key = str(sample.generation_id)
            if key in self._samples:
                continue
            self._samples[key] = sample
            kept = sample.kept if sample.kept is not None else sum(
                is_kept_score(s, state.threshold) for s in sample.scores)
            self.add_row(str(sample.image_id), sample.task, scores_text(sample, state.threshold),
                         f"{kept}/{len(sample.scores)}", shorten(sample.question, 100), key=key)
        if selected in self._samples:
            self.move_cursor(row=self.get_row_index(selected))

    def _selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)
        except Exception:  # noqa: BLE001 - no valid cursor: nothing to keep selected
            return None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        sample = self._samples.get(str(event.row_key.value))
        if sample is not None:
            event.stop()
            self.post_message(SampleChosen(sample.image_id, sample.task))
