"""The latest failed calls, newest first: where, and what went wrong."""

from __future__ import annotations

from rich.text import Text

from visinstruct.tui.state import RunState
from visinstruct.tui.widgets.formatting import shorten
from visinstruct.tui.widgets.rich_table import TableView

KIND_STYLE = {"backpressure": "yellow", "transient": "dark_orange", "permanent": "red"}
# Fixed widths for where the error happened; the error itself takes the rest.
COLUMNS = (("Stage", 8), ("Image", 8), ("Endpoint", 12), ("Error", None))


def error_text(error_class: str, kind: str, message: str) -> Text:
    """'ModelError: the message', coloured by the kind of error."""
    text = Text(error_class or kind or "error", style=KIND_STYLE.get(kind, "red"))
    if message:
        text.append(f": {shorten(message, 160)}")
    return text


class ErrorFeed(TableView):
    """Stage, image, endpoint and the error class with its message, for each recent error."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(COLUMNS, **kwargs)

    def show(self, state: RunState) -> None:
        errors = list(state.errors)
        room = self.visible_rows()
        shown = errors if len(errors) <= room else errors[:room - 1]
        rows = [(error.stage, str(error.image_id), error.endpoint or "–",
                 error_text(error.error_class, error.kind, error.message)) for error in shown]
        if not errors:
            rows.append(("", "", "", Text("no errors", style="green")))
        self.show_rows(rows, more=len(errors) - len(shown))
