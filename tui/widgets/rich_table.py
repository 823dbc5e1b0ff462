"""A read-only table drawn line by line: far cheaper to redraw many times a second than a
DataTable."""

from __future__ import annotations

from collections.abc import Sequence

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

Cell = Text | str
Column = tuple[str, int | None]  # header, fixed width (None: shares the space that is left)
HEADER_STYLE = Style(bold=True)
GAP = 1
MIN_FLEXIBLE = 8


def column_widths(columns: Sequence[Column], width: int) -> list[int]:
    """Fixed columns keep their width; the flexible ones share what is left (at least 8 each)."""
    fixed = sum(w for _, w in columns if w is not None) + GAP * (len(columns) - 1)
    flexible = [i for i, (_, w) in enumerate(columns) if w is None]
    spare = max(MIN_FLEXIBLE * len(flexible), width - fixed)
    widths = [w or 0 for _, w in columns]
    for number, index in enumerate(flexible):
        share = spare // len(flexible) + (1 if number < spare % len(flexible) else 0)
        widths[index] = share
    return widths


class TableView(Widget):
    """Rows under fixed columns, rendered as strips; `rows` keeps the plain text shown."""

    DEFAULT_CSS = "TableView { height: auto; }"

    def __init__(self, columns: Sequence[Column], *, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.columns = tuple(columns)
        self.rows: list[list[str]] = []
        self._cells: list[list[Text]] = []
        self._more = 0
        self._shown: tuple[tuple[str, ...], ...] | None = None
        self._strips: dict[int, list[Strip]] = {}

    def show_rows(self, rows: Sequence[Sequence[Cell]], more: int = 0) -> None:
        """Redraw with `rows` (and a '… N more' line when `more`); a no-op when nothing changed."""
        plain = tuple(tuple(str(cell) for cell in row) for row in rows) + ((f"+{more}",),)
        if plain == self._shown:
            return
        # A new layout only when the number of lines changes: a reflow costs the whole screen.
        relayout = self._shown is None or len(plain) != len(self._shown)
        self._shown = plain
        self.rows = [list(row) for row in plain[:-1]]
        self._cells = [[cell if isinstance(cell, Text) else Text(cell) for cell in row]
                       for row in rows]
        self._more = more
        self._strips.clear()
        self.refresh(layout=relayout)

    def visible_rows(self, default: int = 10) -> int:
        """How many rows fit under the header now (a default before the first layout)."""
        height = self.size.height
        return max(1, height - 1) if height > 1 else default

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return 1 + len(self._cells) + (1 if self._more else 0)

    def _lines(self, width: int) -> list[Strip]:
        strips = self._strips.get(width)
        if strips is not None:
            return strips
        widths = column_widths(self.columns, width)
        header = [Text(name, style=HEADER_STYLE) for name, _ in self.columns]
        lines = [header, *self._cells]
        if self._more:
            lines.append([Text(f"… {self._more:,} more", style="dim")])
        console = self.app.console
        strips = []
        for cells in lines:
            segments: list[Segment] = []
            for index, column_width in enumerate(widths):
                cell = cells[index].copy() if index < len(cells) else Text()
                cell.truncate(column_width, overflow="ellipsis", pad=True)
                segments.extend(cell.render(console))
                if index < len(widths) - 1:
                    segments.append(Segment(" " * GAP))
            strips.append(Strip(segments).crop_extend(0, width, None))
        self._strips = {width: strips}
        return strips

    def render_line(self, y: int) -> Strip:
        lines = self._lines(self.size.width)
        return lines[y] if y < len(lines) else Strip.blank(self.size.width)
