"""The review list: one row per (image, task) of the current page."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

from visinstruct.core.review.samples import SampleRow

TASK_SHORT = {"conversation": "conv", "detail": "detail", "complex_reasoning": "reason"}
STATE_STYLE = {"kept": "green", "dropped": "red", "unjudged": "yellow", "gated": "red",
               "parse_failure": "magenta"}


def row_key(image_id: int, task: str) -> str:
    return f"{image_id}:{task}"


def state_text(row: SampleRow) -> Text:
    """The state word (with how many pairs were kept) and a mark for evaluated samples."""
    state = row.state
    labels = {"parse_failure": "parse fail", "kept": f"kept {row.kept}/{row.pairs}"}
    label = labels.get(state, state)
    text = Text(label, style=STATE_STYLE.get(state, ""))
    if row.evaluated:
        text.append(" ev", style="cyan")
    return text


def cells(row: SampleRow) -> tuple[str | Text, ...]:
    """The cells of a row, in COLUMNS order."""
    mean = "–" if row.mean_score is None else f"{row.mean_score:.1f}"
    return (str(row.image_id), TASK_SHORT.get(row.task, row.task), str(row.pairs), mean,
            state_text(row), row.prompt_version[:8])


COLUMNS = ("image", "task", "pairs", "mean", "state", "version")


class SampleTable(DataTable[object]):
    """Shows a page of SampleRows; `current` is the highlighted one."""

    DEFAULT_CSS = """
    SampleTable {
        height: 1fr;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.rows_shown: list[SampleRow] = []

    def on_mount(self) -> None:
        # Fixed widths: pages never shift the columns about.
        for key, label, width in zip(COLUMNS, ("image", "task", "n", "mean", "state", "version"),
                                     (6, 6, 2, 4, 11, 8), strict=True):
            self.add_column(label, key=key, width=width)

    def show_rows(self, rows: Sequence[SampleRow], keep: tuple[int, str] | None = None) -> None:
        """Replace the rows; the cursor goes to `keep` when it is on this page, else the top."""
        self.rows_shown = list(rows)
        self.clear()
        for row in rows:
            self.add_row(*cells(row), key=row_key(row.image_id, row.task))
        index = 0
        if keep is not None:
            index = next((n for n, r in enumerate(rows) if r.key == keep), 0)
        if rows:
            self.move_cursor(row=index, scroll=True)

    def update_row(self, row: SampleRow) -> None:
        """Show a sample's figures after a review action, where it stands in the page."""
        index = next((n for n, shown in enumerate(self.rows_shown) if shown.key == row.key), None)
        if index is None:
            return
        self.rows_shown[index] = row
        key = row_key(row.image_id, row.task)
        for column, value in zip(COLUMNS, cells(row), strict=True):
            self.update_cell(key, column, value)

    @property
    def current(self) -> SampleRow | None:
        if not self.rows_shown or not 0 <= self.cursor_row < len(self.rows_shown):
            return None
        return self.rows_shown[self.cursor_row]


def page_status(number: int, shown: int, total: int | None, has_more: bool, jumped: bool) -> str:
    """The line under the list: which page, how many shown of how many, the paging keys."""
    counted = "counting…" if total is None else f"{total:,} samples"
    if not shown:
        return "No samples match these filters." if number == 1 else "No more samples."
    more = " · n: next page" if has_more else ""
    back = " · b: previous page" if number > 1 else ""
    where = f"Page {number - 1 if jumped else number} · "
    if jumped and number == 2:
        where = "From the sample you opened · "
    elif number == 1 and not has_more:
        where = ""  # everything fits one page
    return f"{where}{shown} shown · {counted}{more}{back}"
