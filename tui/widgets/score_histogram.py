"""A live column chart of judge scores 1..10 with the threshold marked, and the keep rate."""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from visinstruct.tui.state import RunState
from visinstruct.tui.widgets.formatting import percent

BLOCKS = " ▁▂▃▄▅▆▇█"
COLUMN = 3  # characters per score column: a two-character bar and a gap
KEPT, DROPPED, UNREADABLE = Style(color="green"), Style(color="red"), Style(dim=True)
THRESHOLD_LABEL, SUMMARY = Style(bold=True, reverse=True), Style(bold=True, color="green")


class ScoreHistogram(Widget):
    """Columns for scores 1..10 (and '?' for unreadable ones) scaled to the widget's height."""

    DEFAULT_CSS = "ScoreHistogram { height: 8; }"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.buckets: dict[int, int] = {}
        self.threshold = 7.0
        self.judged = 0
        self.kept = 0
        self._strips: tuple[int, int, list[Strip]] | None = None

    def show(self, state: RunState) -> None:
        figures = (dict(state.score_buckets), state.threshold, state.judged_pairs, state.kept_pairs)
        if figures == (self.buckets, self.threshold, self.judged, self.kept):
            return
        self.buckets, self.threshold, self.judged, self.kept = figures
        self._strips = None
        self.refresh()

    def chart_lines(self, height: int) -> list[list[tuple[str, Style | None]]]:
        """The chart as lines of (text, style): bars, score labels, then the keep rate."""
        scores = ([0] if self.buckets.get(0) else []) + list(range(1, 11))
        chart_height = max(1, height - 2)
        tallest = max((self.buckets.get(s, 0) for s in scores), default=0)
        eighths = {}
        for score in scores:
            count = self.buckets.get(score, 0)
            size = round(count / tallest * chart_height * 8) if tallest else 0
            eighths[score] = max(size, 1) if count else 0  # a score seen at all is never invisible
        lines: list[list[tuple[str, Style | None]]] = []
        for row in range(chart_height, 0, -1):
            line: list[tuple[str, Style | None]] = []
            for score in scores:
                level = max(0, min(8, eighths[score] - (row - 1) * 8))
                line.append((BLOCKS[level] * (COLUMN - 1) + " ", self._style(score)))
            lines.append(line)
        first_kept = int(-(-self.threshold // 1))
        lines.append(self._labels(scores, first_kept))
        lines.append([(f"≥{self.threshold:g} kept: ", None),
                      (f"{self.kept:,}/{self.judged:,} ({percent(self.kept, self.judged)})",
                       SUMMARY)])
        return lines

    @staticmethod
    def _labels(scores: list[int], first_kept: int) -> list[tuple[str, Style | None]]:
        labels: list[tuple[str, Style | None]] = []
        for score in scores:
            text = ("?" if score == 0 else str(score)).rjust(COLUMN - 1)
            labels.append((text, THRESHOLD_LABEL if score == first_kept else None))
            labels.append((" ", None))
        return labels

    def _style(self, score: int) -> Style:
        if score == 0:
            return UNREADABLE
        return KEPT if score >= self.threshold else DROPPED

    def render_line(self, y: int) -> Strip:
        width, height = self.size
        if self._strips is None or self._strips[:2] != (width, height):
            strips = [Strip([Segment(text, style) for text, style in line])
                      .crop_extend(0, width, None)
                      for line in self.chart_lines(height)]
            self._strips = (width, height, strips)
        lines = self._strips[2]
        return lines[y] if y < len(lines) else Strip.blank(width)
