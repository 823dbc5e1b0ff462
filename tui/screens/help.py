"""The `?` screen: every key of the app, grouped by where it works."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

KeySection = tuple[str, Sequence[tuple[str, str]]]


def key_rows(bindings: Iterable[BindingType],
             display: Callable[[Binding], str]) -> list[tuple[str, str]]:
    """(keys, description) for each binding that has a description, in order."""
    rows: list[tuple[str, str]] = []
    for binding in Binding.make_bindings(bindings):
        if not binding.description:
            continue
        shown = display(binding)
        # The tooltip, where given, says more than the footer's one word.
        text = binding.tooltip or binding.description
        for index, (keys, description) in enumerate(rows):
            if description == text:
                rows[index] = (f"{keys} / {shown}", description)  # one row for aliases
                break
        else:
            rows.append((shown, text))
    return rows


def keys_table(sections: Sequence[KeySection]) -> Table:
    """One table: a heading row per section, then its keys."""
    table = Table.grid(padding=(0, 2))
    table.add_column("key", justify="right", style="bold", no_wrap=True)
    table.add_column("action")
    for number, (title, rows) in enumerate(sections):
        if number:
            table.add_row("", "")
        table.add_row("", Text(title, style="bold underline"))
        for keys, description in rows:
            table.add_row(keys, description)
    return table


def split_sections(sections: Sequence[KeySection]) -> tuple[list[KeySection], list[KeySection]]:
    """Two columns of whole sections with about the same number of lines."""
    lines = [len(rows) + 2 for _, rows in sections]
    half = sum(lines) / 2
    taken = 0
    for index, count in enumerate(lines):
        if taken + count / 2 > half and index:
            return list(sections[:index]), list(sections[index:])
        taken += count
    return list(sections), []


class HelpScreen(ModalScreen[None]):
    """Lists the keys of every screen (two columns on a wide terminal); escape, q or ? closes it."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]

    def __init__(self, sections: Sequence[KeySection]) -> None:
        super().__init__(classes="dialog")
        self.sections = sections

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Label("Keys", classes="dialog-title")
            left, right = split_sections(self.sections)
            with VerticalScroll(id="help-keys"), Horizontal(id="help-columns"):
                yield Static(keys_table(left), id="help-table", classes="help-column")
                yield Static(keys_table(right), id="help-table-more", classes="help-column")
            yield Static("Every action is also in the command palette (ctrl+p). "
                         "Esc closes this.", classes="help-hint")

    def action_close(self) -> None:
        self.dismiss(None)
