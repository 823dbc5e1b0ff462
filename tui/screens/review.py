"""Review: a paged, filtered list of samples; the detail of one; accept, reject, edit, re-judge."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Header, OptionList, Static
from textual.worker import Worker, WorkerState

from visinstruct.core.review.decisions import (
    ReviewRow,
    clear_decision,
    restore_reviews,
    undo_review,
)
from visinstruct.core.review.samples import (
    SampleDetail,
    SampleFilter,
    SamplePage,
    accept_pair,
    count_samples,
    edit_pair,
    image_file,
    prompt_versions_in_use,
    reject_pair,
    rejudge,
    sample_detail,
    sample_page,
    sample_row,
)
from visinstruct.core.store.database import Store
from visinstruct.core.store.interrupt import ReadCancelled
from visinstruct.tui.context import AppContext
from visinstruct.tui.screens.blind_review import BlindReviewScreen
from visinstruct.tui.widgets.footer import Footer
from visinstruct.tui.widgets.review_detail import SampleDetailPane
from visinstruct.tui.widgets.review_edit import EditedPair, EditPairDialog
from visinstruct.tui.widgets.review_filters import ReviewFilters
from visinstruct.tui.widgets.review_list import SampleTable, page_status
from visinstruct.tui.widgets.review_workers import ScreenReads, report_failure

if TYPE_CHECKING:
    from visinstruct.tui.app import VisinstructApp

PAGE_SIZE = 50
Key = tuple[int, str]
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


def _just_before(image_id: int) -> Key:
    """A keyset position right before every task of `image_id`."""
    return (image_id - 1, "\uffff")


class ReviewScreen(Screen[None]):
    """Pages through samples with keyset queries; every read and write runs in a thread worker."""

    TITLE = "Review"
    blind_seed: int | None = None
    AUTO_FOCUS = "#review-list"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "decide('accept')", "Accept", tooltip="Accept the highlighted pair (keep it)"),
        Binding("x", "decide('reject')", "Reject", tooltip="Reject the highlighted pair (drop it)"),
        *DECISION_BINDINGS,
        Binding("ctrl+e", "edit", "Edit", show=False,
                tooltip="Edit the pair's question and answer"),
        Binding("j", "rejudge", "Re-judge", show=False, tooltip="Judge this sample again"),
        Binding("n", "next_page", "Next page"),
        Binding("b", "previous_page", "Previous page", show=False),
        Binding("t", "next_task", "Next task", show=False),
        Binding("slash", "focus_filters", "Search", key_display="/"),
        Binding("B", "blind_review", "Blind review", key_display="B"),
    ]
    DEFAULT_CSS = """
    ReviewScreen #review-body {
        height: 1fr;
    }
    ReviewScreen #review-list {
        width: 44%;
        min-width: 30;
        max-width: 60;
        border-right: vkey $primary;
    }
    ReviewScreen.-narrow #review-body {
        layout: vertical;
    }
    ReviewScreen.-narrow #review-list {
        width: 100%;
        max-width: 100%;
        height: 9;
        border-right: none;
        border-bottom: hkey $primary;
    }
    ReviewScreen #review-status {
        height: 1;
        color: $text-muted;
        padding: 0 1;
    }
    """

    def __init__(self) -> None:
        super().__init__(id="review")
        self.filters = SampleFilter()
        self.page = SamplePage((), False)
        self.total: int | None = None
        self.reads = ScreenReads()
        self._pages: list[Key | None] = [None]   # keyset position of each page so far
        self._token = 0                           # results of older loads are dropped
        self._count_cancel = threading.Event()
        self._keep: Key | None = None             # the row to put the cursor on after a load
        self._shown: Key | None = None            # the sample in the detail pane
        self._coming: Key | None = None           # the highlighted sample, its detail loading
        self._busy: set[int] = set()              # generations being re-judged
        self._pending_jump: int | None = None     # show_sample's image, until its detail is in
        self._behind_dialog = False               # suspended by a dialog, not by another screen
        self._suspended = False                   # resumes before any suspend have nothing new
        self._jumped = False                      # the list starts at a shown sample, not page 1
        self._undo: list[tuple[str, object]] = []  # what u takes back, newest last

    # -- layout ----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield ReviewFilters(id="review-filters")
        with Horizontal(id="review-body"):
            yield SampleTable(id="review-list")
            yield SampleDetailPane(id="review-detail")
        yield Static("loading…", id="review-status")
        yield Footer(show_command_palette=False)  # the keys need the whole line at 120 columns

    def on_mount(self) -> None:
        self._load_versions()
        self.reload()

    async def on_unmount(self) -> None:
        await self.reads.stop()

    def on_screen_suspend(self) -> None:
        self._behind_dialog = isinstance(self.app.screen, ModalScreen)
        self._suspended = True

    def on_screen_resume(self) -> None:
        # Back from another screen (not a dialog): a run or the lab may have changed the store.
        # Not on first showing (Textual resumes a new mode's screen twice): on_mount just loaded.
        if self._suspended and not self._behind_dialog and self._pending_jump is None:
            self.total = None
            self.reload(keep_pages=True)
            detail = self.pane.detail
            if detail is not None:
                self._load_detail(detail.image.image_id, detail.task)
        self._suspended = False
        self._behind_dialog = False

    @property
    def context(self) -> AppContext:
        """The app's AppContext (config, store path)."""
        return cast("VisinstructApp", self.app).ctx

    @property
    def store(self) -> Store:
        return cast("VisinstructApp", self.app).store

    @property
    def threshold(self) -> float:
        return float(self.context.config.judge.threshold)

    @property
    def table(self) -> SampleTable:
        return self.query_one(SampleTable)

    @property
    def pane(self) -> SampleDetailPane:
        return self.query_one(SampleDetailPane)

    # -- the keys that act on what is shown: pairs, undo, clear, re-judge ------------------
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
            self.notify("No pair shown here.", severity="warning")
            return
        if pair.decision is None:
            self.notify("You have not decided on this pair.")
            return
        self._clear(pair.pair_id)

    @work(thread=True, group="review-write", exit_on_error=False)
    def _clear(self, pair_id: int) -> None:
        try:
            rows = clear_decision(self.store, pair_id)
        except Exception as error:  # noqa: BLE001 - shown as a dialog
            self.reads.fail(self.app, error)
            return
        self.reads.call(self.app, self._cleared, rows)

    def _cleared(self, rows: tuple[ReviewRow, ...]) -> None:
        self.remember(("cleared", rows))
        self._after_write("Cleared your decision: the judge's score decides again.")

    def action_undo(self) -> None:
        if not self._undo:
            self.notify("Nothing to undo.")
            return
        self._undo_step(self._undo.pop())

    @work(thread=True, group="review-write", exit_on_error=False)
    def _undo_step(self, step: UndoStep) -> None:
        kind, data = step
        try:
            if kind == "added":
                undo_review(self.store, data)
            else:
                restore_reviews(self.store, data)
        except Exception as error:  # noqa: BLE001 - shown as a dialog
            self.reads.fail(self.app, error)
            return
        self.reads.call(self.app, self._after_write, "Undone.")

    def action_clear_filters(self) -> None:
        self.query_one(ReviewFilters).clear()

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

    # -- public ----------------------------------------------------------------------------------
    def show_sample(self, image_id: int, task: str | None = None) -> None:
        """Show one image's sample (its first task when None) and move the list to it."""
        self._pages = [None, _just_before(image_id)]
        self._jumped = True
        self._keep = (image_id, task) if task else None
        self._pending_jump = image_id
        self.reload(keep_pages=True)
        self._load_detail(image_id, task)

    def reload(self, *, keep_pages: bool = False) -> None:
        """Load the current page again (from the first page unless `keep_pages`)."""
        if not keep_pages:
            self._pages = [None]
            self._jumped = False
        self._token += 1
        self._coming = None  # a failed detail read is tried again
        self._load_page(self._token, self.filters, self._pages[-1])

    # -- reading ---------------------------------------------------------------------------------
    @work(thread=True, group="review-versions", exit_on_error=False)
    def _load_versions(self) -> None:
        with self.reads.track():
            try:
                versions = prompt_versions_in_use(self.store)
            except Exception as error:  # noqa: BLE001 - shown as a dialog
                self.reads.fail(self.app, error)
                return
            self.reads.call(self.app, self.query_one(ReviewFilters).set_versions, versions)

    @work(thread=True, group="review-page", exit_on_error=False)
    def _load_page(self, token: int, filters: SampleFilter, after: Key | None) -> None:
        with self.reads.track() as closing:
            try:
                page = sample_page(self.store, filters, self.threshold, after=after,
                                   limit=PAGE_SIZE, cancel=closing)
            except ReadCancelled:
                return
            except Exception as error:  # noqa: BLE001 - shown as a dialog
                self.reads.fail(self.app, error)
                return
            self.reads.call(self.app, self._show_page, token, page)

    def _show_page(self, token: int, page: SamplePage) -> None:
        if token != self._token:
            return
        self.page = page
        keep = self._keep or self._shown
        self._keep = None
        self.table.show_rows(page.rows, keep)
        if not page.rows and self._pending_jump is None:
            # Nothing matches: nothing may be acted on, so nothing is shown.
            self._shown = None
            self.pane.clear("No samples match these filters." if len(self._pages) == 1
                            else "No more samples.")
        self._update_status()
        self._follow_cursor()
        if self.total is None:
            self._count_cancel.set()
            self._count_cancel = self.reads.event()
            # Once the page is on screen: the count only fills in the status line.
            self.call_after_refresh(self._count, self.filters, self._count_cancel)

    @work(thread=True, group="review-count", exit_on_error=False)
    def _count(self, filters: SampleFilter, cancel: threading.Event) -> None:
        with self.reads.track():
            try:
                total = count_samples(self.store, filters, self.threshold, cancel)
            except Exception as error:  # noqa: BLE001 - counting is extra: a failure only says so
                self.reads.call(self.app, self.notify, f"Could not count the samples: {error}")
                return
            if total is not None:
                self.reads.call(self.app, self._show_total, filters, total)

    def _show_total(self, filters: SampleFilter, total: int) -> None:
        if filters == self.filters:
            self.total = total
            self._update_status()

    def _update_status(self) -> None:
        text = page_status(len(self._pages), len(self.page.rows), self.total,
                           self.page.has_more, self._jumped)
        self.query_one("#review-status", Static).update(text)

    @work(thread=True, group="review-detail", exclusive=True, exit_on_error=False)
    def _load_detail(self, image_id: int, task: str | None) -> None:
        with self.reads.track():
            try:
                detail = sample_detail(self.store, image_id, task, self.threshold)
                picture = None if detail is None else image_file(self.context.config,
                                                                 detail.image)
            except Exception as error:  # noqa: BLE001 - shown as a dialog
                self.reads.fail(self.app, error)
                return
            self.reads.call(self.app, self._show_detail, image_id, detail, picture)

    async def _show_detail(self, image_id: int, detail: SampleDetail | None,
                           picture: Path | None) -> None:
        self._coming = None
        if detail is None:
            self.notify(f"Image {image_id} is not in this store.", severity="warning")
            return
        if image_id == self._pending_jump:
            self._pending_jump = None
        self._shown = (image_id, detail.task)
        await self.pane.show(detail, picture)
        rows = self.table.rows_shown
        index = next((n for n, row in enumerate(rows) if row.key == self._shown), None)
        if index is not None and index != self.table.cursor_row:
            self.table.move_cursor(row=index, scroll=True)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # The workers catch their own errors; this only guards against one that slipped through.
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            report_failure(self.app, event.worker.error)

    # -- list events -----------------------------------------------------------------------------
    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._follow_cursor()

    def _follow_cursor(self) -> None:
        """Show the highlighted sample, unless it is shown or on its way (one read, not two)."""
        current = self.table.current
        if (self._pending_jump is None and current is not None
                and current.key not in (self._shown, self._coming)):
            self._coming = current.key
            self._load_detail(current.image_id, current.task)

    def on_review_filters_filters_changed(self, event: ReviewFilters.FiltersChanged) -> None:
        if event.filters == self.filters:
            return
        self.filters = event.filters
        self.total = None
        self.reload()

    def on_review_filters_submitted(self, _event: ReviewFilters.Submitted) -> None:
        self.table.focus()  # enter after `/` words: the next key is for the list again

    def on_review_filters_filter_invalid(self, event: ReviewFilters.FilterInvalid) -> None:
        self.notify(event.problem, title="Filter", severity="error")

    # -- actions ---------------------------------------------------------------------------------
    def action_next_page(self) -> None:
        if not self.page.has_more or not self.page.rows:
            self.notify("This is the last page.")
            return
        self._pages.append(self.page.rows[-1].key)
        self.reload(keep_pages=True)

    def action_previous_page(self) -> None:
        if len(self._pages) == 1:
            self.notify("This is the first page.")
            return
        self._pages.pop()
        self._jumped = self._jumped and len(self._pages) > 1
        self.reload(keep_pages=True)

    def action_blind_review(self) -> None:
        """Pairs without their scores, to measure the judge (tests fix `blind_seed`)."""
        self.app.push_screen(BlindReviewScreen(seed=self.blind_seed))

    def action_focus_filters(self) -> None:
        self.query_one(ReviewFilters).focus_first()

    def action_next_task(self) -> None:
        detail = self.pane.detail
        if detail is None or len(detail.tasks) < 2:
            return
        tasks = list(detail.tasks)
        position = tasks.index(detail.task) if detail.task in tasks else -1
        self._load_detail(detail.image.image_id, tasks[(position + 1) % len(tasks)])

    def action_decide(self, decision: str) -> None:
        pair = self.pane.selected_pair
        if pair is None:
            self.notify("No pair to decide on here.", severity="warning")
            return
        self._write(decision, pair.pair_id, None)

    def action_edit(self) -> None:
        pair = self.pane.selected_pair
        detail = self.pane.detail
        if pair is None or detail is None:
            self.notify("No pair to edit here.", severity="warning")
            return

        def edited(result: EditedPair | None) -> None:
            if result is not None:
                self._write("edit", pair.pair_id, result)

        title = f"Edit pair {pair.idx + 1} of image {detail.image.image_id} ({detail.task})"
        self.app.push_screen(EditPairDialog(title, pair.question, pair.answer), edited)

    @work(thread=True, group="review-write", exit_on_error=False)
    def _write(self, decision: str, pair_id: int, text: EditedPair | None) -> None:
        try:
            if decision == "accept":
                review_id = accept_pair(self.store, pair_id)
            elif decision == "reject":
                review_id = reject_pair(self.store, pair_id)
            else:
                assert text is not None
                review_id = edit_pair(self.store, pair_id, *text)
        except Exception as error:  # noqa: BLE001 - shown as a dialog
            self.reads.fail(self.app, error)
            return
        done = {"accept": "Accepted", "reject": "Rejected", "edit": "Saved the edit of"}[decision]
        self.reads.call(self.app, self.remember, ("added", review_id))
        self.reads.call(self.app, self._after_write, f"{done} the pair (u: undo).")

    def _after_write(self, message: str) -> None:
        self.notify(message)
        detail = self.pane.detail
        if detail is not None:
            self._load_detail(detail.image.image_id, detail.task)
            self._refresh_row(detail.image.image_id, detail.task)

    @work(thread=True, group="review-row", exit_on_error=False)
    def _refresh_row(self, image_id: int, task: str) -> None:
        with self.reads.track():
            try:
                row = sample_row(self.store, image_id, task, self.threshold)
            except Exception as error:  # noqa: BLE001 - shown as a dialog
                self.reads.fail(self.app, error)
                return
            if row is not None:
                self.reads.call(self.app, self.table.update_row, row)
