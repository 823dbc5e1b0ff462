"""A dialog to edit one pair's question and answer; the original is kept in the store."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static, TextArea

EditedPair = tuple[str, str]


class EditPairDialog(ModalScreen[EditedPair | None]):
    """Dismisses with (question, answer) on save, None on cancel."""

    DEFAULT_CSS = """
    EditPairDialog {
        align: center middle;
        background: $background 60%;
    }
    EditPairDialog #edit-box {
        width: 90;
        max-width: 96%;
        height: auto;
        max-height: 96%;
        padding: 0 1;
        border: thick $primary;
        background: $surface;
    }
    EditPairDialog .edit-label {
        text-style: bold;
        margin-top: 1;
    }
    EditPairDialog TextArea {
        height: 5;
    }
    EditPairDialog #edit-answer {
        height: 8;
    }
    EditPairDialog #edit-buttons {
        height: auto;
        align-horizontal: right;
    }
    EditPairDialog #edit-buttons Button {
        margin-left: 2;
    }
    EditPairDialog #edit-hint {
        color: $text-muted;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, title: str, question: str, answer: str) -> None:
        super().__init__()
        self.title_text = title
        self.question = question
        self.answer = answer

    def compose(self) -> ComposeResult:
        with Vertical(id="edit-box"):
            yield Label(self.title_text, classes="edit-label")
            yield Label("Question", classes="edit-label")
            yield TextArea(self.question, id="edit-question", soft_wrap=True)
            yield Label("Answer", classes="edit-label")
            yield TextArea(self.answer, id="edit-answer", soft_wrap=True)
            yield Static("ctrl+s saves · escape cancels · the generated text is kept as the "
                         "original", id="edit-hint")
            with Horizontal(id="edit-buttons"):
                yield Button("Save", variant="primary", id="save", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#edit-question", TextArea).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    def action_save(self) -> None:
        question = self.query_one("#edit-question", TextArea).text.strip()
        answer = self.query_one("#edit-answer", TextArea).text.strip()
        if not question or not answer:
            self.notify("Both the question and the answer need some text.", severity="error",
                        title="Cannot save")
            return
        self.dismiss((question, answer))

    def action_cancel(self) -> None:
        self.dismiss(None)
