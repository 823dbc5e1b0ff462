"""The evaluation screen's tables: figures per task type, and the compared samples."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

from visinstruct.core.evaluation.aggregate import Summary
from visinstruct.core.evaluation.view import EvaluatedSample
from visinstruct.core.evaluation.wording import bias_text, interval_text, relative_text

OUTCOME_STYLE = {"win": "green", "loss": "red", "tie": "yellow", "unparsed": "magenta"}
SAMPLE_ORDERS = ("image", "losses first", "wins first")


def _number(value: float | None, digits: int = 1, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def interval(summary: Summary) -> str:
    return interval_text(summary)


class SummaryTable(DataTable[object]):
    """Relative score with its interval, wins, ties, losses, position bias and unparsed, per
    task."""

    DEFAULT_CSS = """
    SummaryTable {
        height: auto;
        padding-left: 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        # No cell padding, one space after each column instead: every column fits in 80
        # columns (the padding on both sides of nine columns took 18 and cut the last).
        super().__init__(id=id, cursor_type="none", zebra_stripes=True, cell_padding=0)

    def on_mount(self) -> None:
        # Fixed widths: the layout never depends on which rows arrived first.
        for label, width in (("task", 18), ("n", 5), ("relative", 9), ("95% CI", 12),
                             ("wins", 5), ("ties", 5), ("losses", 7), ("pos. bias", 10),
                             ("unparsed", 8)):
            self.add_column(label, key=label, width=width)

    def show(self, by_task: dict[str, Summary], overall: Summary) -> None:
        self.clear()
        for name, summary in [*by_task.items(), ("overall", overall)]:
            label = Text(name, style="bold" if name == "overall" else "")
            relative = Text(relative_text(summary.relative_score),
                            style="green" if (summary.relative_score or 0) >= 100 else "")
            self.add_row(label, str(summary.n), relative, interval(summary), str(summary.wins),
                         str(summary.ties), str(summary.losses),
                         bias_text(summary.position_bias), str(summary.unparsed))


def ordered(samples: Sequence[EvaluatedSample], order: str) -> list[EvaluatedSample]:
    """The samples by image, biggest loss first, or biggest win first; unparsed ones last."""
    if order == "image":
        return list(samples)

    def margin(sample: EvaluatedSample) -> float:
        if sample.ours is None or sample.baseline is None:
            return float("inf")
        gap = sample.ours - sample.baseline
        return gap if order == "losses first" else -gap

    return sorted(samples, key=lambda s: (margin(s), s.image_id, s.task))


class EvaluatedSamplesTable(DataTable[object]):
    """One row per compared (image, task); `current` is the highlighted one."""

    DEFAULT_CSS = """
    EvaluatedSamplesTable {
        height: 1fr;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.samples: list[EvaluatedSample] = []

    def on_mount(self) -> None:
        for label, width in (("image", 7), ("task", 17), ("ours", 4), ("baseline", 8),
                             ("outcome", 8), ("pos. bias", 9), ("unparsed", 8)):
            self.add_column(label, key=label, width=width)

    def show(self, samples: Sequence[EvaluatedSample]) -> None:
        self.samples = list(samples)
        self.clear()
        for sample in samples:
            outcome = sample.outcome
            self.add_row(str(sample.image_id), sample.task, _number(sample.ours),
                         _number(sample.baseline),
                         Text(outcome, style=OUTCOME_STYLE.get(outcome, "")),
                         _number(sample.bias, 1, signed=True), str(sample.unparsed),
                         key=f"{sample.image_id}:{sample.task}")

    @property
    def current(self) -> EvaluatedSample | None:
        if not self.samples or not 0 <= self.cursor_row < len(self.samples):
            return None
        return self.samples[self.cursor_row]
