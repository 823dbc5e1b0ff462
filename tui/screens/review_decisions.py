"""Review keys that act on what is shown: move between pairs, undo, clear a decision, clear filters.

Kept apart from the review screen's loading logic; ReviewScreen mixes this in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import work
from textual.binding import Binding
from textual.widgets import OptionList
from visinstruct.core.review.decisions import (
    ReviewRow,
    clear_decision,
    restore_reviews,
    undo_review,
)
from visinstruct.core.review.samples import rejudge
from visinstruct.tui.widgets.review_filters import ReviewFilters

if TYPE_CHECKING:
    from visinstruct.tui.widgets.review_detail import SampleDetailPane

# One undo step: ("added", review id) for a decision or edit, ("cleared", rows) for a clear.
UndoStep = tuple[str, Any]
MAX_UNDO = 100

DECISION_BINDINGS = [
    Binding("u", "undo", "Undo", tooltip="Undo your last accept, reject, edit or clear"),
    Binding("c", "clear_decision", "Clear decision", show=False,
            tooltip="Clear your accept/reject of this pair: the judge's score decides again"),
    Binding("right_square_bracket", "move_pair(1)", "Next pair", key_display="]",
            tooltip="Next pair of this sample (works from anywhere on the screen)"),
    Binding("left_square_bracket", "move_pair(-1)", "Previous pair", key_display="[",
            show=False, tooltip="Previous pair of this sample (works from anywhere)"),
    Binding("ctrl+l", "clear_filters", "Clear filters", show=False,
            tooltip="Clear every filter: show all samples"),
]


class ReviewDecisions:
    """The mixin: needs `pane`, `reads`, `store`, `notify` and `_after_write` from the screen."""

    pane: SampleDetailPane
    _undo: list[UndoStep]

    def remember(self, step: UndoStep) -> None:
        """Keep a step the user can undo with u."""
        self._undo.append(step)
        del self._undo[:-MAX_UNDO]

    def action_move_pair(self, step: int) -> None:
        """Highlight the next (or previous) pair of the shown sample, wherever the focus is."""
        ours = self.pane.query_one("#ours", OptionList)
        if not ours.option_count or self.pane.detail is None:
            return
        current = ours.highlighted if ours.highlighted is not None else -1
        ours.highlighted = max(0, min(ours.option_count - 1, current + step))

    def action_clear_decision(self) -> None:
        pair = self.pane.selected_pair
        if pair is None:
            self.notify("No pair shown here.", severity="warning")  # type: ignore[attr-defined]
            return
        if pair.decision is None:
            self.notify("You have not decided on this pair.")  # type: ignore[attr-defined]
            return
        self._clear(pair.pair_id)

    @work(thread=True, group="review-write", exit_on_error=False)
    def _clear(self, pair_id: int) -> None:
        screen: Any = self
        try:
            rows = clear_decision(screen.store, pair_id)
        except Exception as error:  # noqa: BLE001 - shown as a dialog
            screen.reads.fail(screen.app, error)
            return
        screen.reads.call(screen.app, self._cleared, rows)

    def _cleared(self, rows: tuple[ReviewRow, ...]) -> None:
        self.remember(("cleared", rows))
        self._after_write("Cleared your decision: the judge's score decides again.")

    def action_undo(self) -> None:
        if not self._undo:
            self.notify("Nothing to undo.")  # type: ignore[attr-defined]
            return
        self._undo_step(self._undo.pop())

    @work(thread=True, group="review-write", exit_on_error=False)
    def _undo_step(self, step: UndoStep) -> None:
        screen: Any = self
        kind, data = step
        try:
            if kind == "added":
                undo_review(screen.store, data)
            else:
                restore_reviews(screen.store, data)
        except Exception as error:  # noqa: BLE001 - shown as a dialog
            screen.reads.fail(screen.app, error)
            return
        screen.reads.call(screen.app, self._after_write, "Undone.")

    def action_clear_filters(self) -> None:
        self.query_one(ReviewFilters).clear()  # type: ignore[attr-defined]


class ReviewRejudge:
    """The re-judge key: one conversation judged again in a worker, one at a time per generation."""

    # Set by the screen that mixes this in (ReviewScreen), as are notify() and _after_write().
    _busy: set[int]
    pane: SampleDetailPane
    reads: Any
    context: Any
    store: Any

    def action_rejudge(self) -> None:
        detail = self.pane.detail
        if detail is None or detail.generation_id is None or detail.status != "ok":
            self.notify("Only a parsed conversation can be re-judged.", severity="warning")
            return
        if detail.generation_id in self._busy:
            self.notify("Already re-judging this one.")
            return
        self._busy.add(detail.generation_id)
        self.notify(f"Re-judging image {detail.image.image_id} ({detail.task})…")
        self._rejudge(detail.generation_id, detail.image.image_id, detail.task)

    @work(thread=True, group="review-rejudge", exit_on_error=False)
    def _rejudge(self, generation_id: int, image_id: int, task: str) -> None:
        with self.reads.track() as closing:
            try:
                result = rejudge(self.context.config, self.store, generation_id, cancel=closing)
            except Exception as error:  # noqa: BLE001 - shown as a dialog
                self.reads.call(self.app, self._rejudged, generation_id, None)
                self.reads.fail(self.app, error)
                return
        scores = ", ".join("–" if j.score is None else f"{j.score:g}" for j in result.judgements)
        self.reads.call(self.app, self._rejudged, generation_id,
                        f"Re-judged image {image_id} ({task}): scores {scores}; "
                        f"{result.kept} kept.")

    def _rejudged(self, generation_id: int, message: str | None) -> None:
        self._busy.discard(generation_id)
        if message is not None:
            self._after_write(message)
