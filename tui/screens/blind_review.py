"""Blind review: one pair at a time without its score or gate verdict; accept, reject or skip.

Opened from the review screen with B. The decisions measure the judge against a human
(shown on the evaluation screen, in `analyze` and `status --json`); this screen shows no
agreement figure, so the reviewer is never nudged towards the judge.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Header, Static

from visinstruct.core.review.blind import (
    BATCH,
    BlindPair,
    blind_decision_count,
    blind_sample,
    record_blind_decision,
)
from visinstruct.core.review.samples import image_file
from visinstruct.core.store.database import Store
from visinstruct.tui.widgets.footer import Footer
from visinstruct.tui.widgets.formatting import counted
from visinstruct.tui.widgets.image_preview import ImagePreview
from visinstruct.tui.widgets.review_workers import ScreenReads

if TYPE_CHECKING:
    from visinstruct.tui.app import VisinstructApp

DONE_TEXT = ("No judged pair is left to review blind: every current judged pair has a "
             "decision. Press escape to go back.")
AGAIN_TEXT = "Every other pair is decided: the pairs you skipped come again."


def pair_text(pair: BlindPair) -> Text:
    """The question and answer, nothing about how the judge or the gates saw them."""
    text = Text()
    text.append(f"Image {pair.image.image_id} · {pair.task}\n\n", style="bold")
    text.append("Q: ", style="bold")
    text.append(f"{pair.question}\n\n")
    text.append("A: ", style="bold")
    text.append(pair.answer)
    return text


def image_text(pair: BlindPair) -> Text:
    """What is known about the image: captions and boxed objects."""
    text = Text()
    for caption in pair.image.captions:
        text.append(f"• {' '.join(caption.split())}\n")
    if pair.image.boxes:
        names = sorted({box.category for box in pair.image.boxes})
        text.append(f"boxed objects: {', '.join(names)}", style="dim")
    return text


class BlindReviewScreen(Screen[None]):
    """Loads a batch of pairs stratified by judge score in a worker; a and x decide, s skips."""

    TITLE = "Blind review"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "decide('accept')", "Accept"),
        Binding("x", "decide('reject')", "Reject"),
        Binding("s", "skip", "Skip"),
        Binding("escape", "close", "Back to review"),
    ]
    DEFAULT_CSS = """
    BlindReviewScreen #blind-body {
        height: 1fr;
        padding: 0 1;
    }
    BlindReviewScreen #blind-pair {
        margin-bottom: 1;
    }
    BlindReviewScreen .blind-heading {
        text-style: bold;
        color: $text-accent;
    }
    BlindReviewScreen #blind-status {
        height: 1;
        color: $text-muted;
        padding: 0 1;
    }
    """

    def __init__(self, *, seed: int | None = None, batch: int = BATCH) -> None:
        super().__init__(id="blind-review")
        self.seed = seed
        self.batch_size = batch
        self.queue: list[BlindPair] = []
        self.current: BlindPair | None = None
        self.decided = 0           # this visit
        self.total: int | None = None
        self.loading = False
        self.finished = False      # nothing left to review
        self.reads = ScreenReads()
        self.shown: set[int] = set()   # pair ids drawn this visit: never drawn twice
        self.skipped: list[BlindPair] = []  # offered again once nothing new is left
        self._pictures: dict[int, Path | None] = {}
        self._batches = 0

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="blind-body"):
            yield Static("loading…", id="blind-pair")
            yield Static("Image", classes="blind-heading")
            yield ImagePreview(id="blind-preview")
            yield Static("", id="blind-image")
        yield Static("", id="blind-status")
        yield Footer()

    def on_mount(self) -> None:
        self._load()

    async def on_unmount(self) -> None:
        await self.reads.stop()

    @property
    def store(self) -> Store:
        return cast("VisinstructApp", self.app).store

    # -- reading ---------------------------------------------------------------------------------
    def _load(self) -> None:
        self.loading = True
        # A new seed per batch: the same seed again would draw from the same order.
        seed = None if self.seed is None else self.seed + self._batches
        self._batches += 1
        self._load_batch(seed, frozenset(self.shown))

    @work(thread=True, group="blind-load", exclusive=True, exit_on_error=False)
    def _load_batch(self, seed: int | None, exclude: frozenset[int]) -> None:
        app: Any = self.app
        with self.reads.track():
            try:
                batch = blind_sample(self.store, self.batch_size, seed=seed, exclude=exclude)
                total = blind_decision_count(self.store)
                pictures = {pair.pair_id: image_file(app.ctx.config, pair.image)
                            for pair in batch}
            except Exception as error:  # noqa: BLE001 - shown as a dialog
                self.reads.call(app, self._loaded, [], None, {})
                self.reads.fail(app, error)
                return
            self.reads.call(app, self._loaded, batch, total, pictures)

    async def _loaded(self, batch: list[BlindPair], total: int | None,
                      pictures: dict[int, Path | None]) -> None:
        self.loading = False
        self.total = total if total is not None else self.total
        self._pictures.update(pictures)
        self.queue = batch
        self.shown.update(pair.pair_id for pair in batch)
        if not batch and self.skipped:
            # Nothing new to draw, but skipped pairs have no decision yet: offer them again.
            self.queue, self.skipped = self.skipped, []
            self.notify(AGAIN_TEXT)
        self.finished = not self.queue
        await self._next()

    async def _next(self) -> None:
        self.current = self.queue.pop(0) if self.queue else None
        pair_widget = self.query_one("#blind-pair", Static)
        preview = self.query_one("#blind-preview", ImagePreview)
        if self.current is None:
            pair_widget.update(Text(DONE_TEXT if self.finished else "loading…", style="dim"))
            self.query_one("#blind-image", Static).update("")
            await preview.show(None)
        else:
            pair_widget.update(pair_text(self.current))
            self.query_one("#blind-image", Static).update(image_text(self.current))
            await preview.show(self._pictures.get(self.current.pair_id))
        self._update_status()

    def _update_status(self) -> None:
        total = "" if self.total is None else \
            f" · {counted(self.total, 'blind decision')} in the store"
        skipped = f" · {len(self.skipped):,} skipped" if self.skipped else ""
        self.query_one("#blind-status", Static).update(
            f"{self.decided} decided now{total}{skipped} · a: accept · x: reject · s: skip · "
            "scores stay hidden")

    # -- actions ---------------------------------------------------------------------------------
    async def action_decide(self, decision: str) -> None:
        pair = self.current
        if pair is None:
            self.notify("No pair to decide on.", severity="warning")
            return
        last = not self.queue
        # After the batch's last decision the next batch loads once it is stored, so the
        # pair just decided is never drawn again.
        self._write(pair.pair_id, decision, last)
        await self._advance(load=not last)

    async def action_skip(self) -> None:
        if self.current is not None:
            self.skipped.append(self.current)
            await self._advance(load=True)

    async def _advance(self, *, load: bool) -> None:
        if self.queue:
            await self._next()
            return
        self.current = None
        self.query_one("#blind-pair", Static).update(Text("loading…", style="dim"))
        if load:
            self._load()

    @work(thread=True, group="blind-write", exit_on_error=False)
    def _write(self, pair_id: int, decision: str, then_load: bool) -> None:
        app: Any = self.app
        try:
            record_blind_decision(self.store, pair_id, decision)
        except Exception as error:  # noqa: BLE001 - shown as a dialog
            self.reads.fail(app, error)
            if then_load:
                self.reads.call(app, self._load)
            return
        self.reads.call(app, self._written, then_load)

    def _written(self, then_load: bool) -> None:
        self.decided += 1
        self.total = (self.total or 0) + 1
        self._update_status()
        if then_load:
            self._load()

    def action_close(self) -> None:
        self.dismiss(None)
