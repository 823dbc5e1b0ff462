"""Thread-worker helpers of the review, lab and evaluation screens: errors as dialogs, and store
reads that stop, and are waited for, before the app closes the store under them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from textual.app import App

from visinstruct.core.errors import VisinstructError

JOIN_SECONDS = 2.0  # a stopped read ends in microseconds; a model call may take longer


def report_failure(app: App[Any], error: BaseException) -> None:
    """Show an error as a titled dialog (never a traceback); call on the event loop."""
    show = getattr(app, "show_error", None)
    if isinstance(error, VisinstructError):
        title, message = error.title, str(error)
    else:
        title, message = "Unexpected error", f"{type(error).__name__}: {error}"
    if show is not None:
        show(title, message)
    else:
        app.notify(message, title=title, severity="error")


class ScreenReads:
    """The reads a screen's thread workers are making, so unmounting can stop and await them.

    Closing the store while a thread is inside a query on its connection crashes SQLite.
    """

    def __init__(self) -> None:
        self.closing = threading.Event()
        self._events: list[threading.Event] = [self.closing]
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._done_reading = threading.Condition(self._lock)

    def event(self) -> threading.Event:
        """A cancel event of its own (e.g. for one count) that is also set when the screen
        closes."""
        made = threading.Event()
        with self._lock:
            self._events = [e for e in self._events if not e.is_set() or e is self.closing]
            self._events.append(made)
            if self.closing.is_set():
                made.set()
        return made

    @contextmanager
    def track(self) -> Iterator[threading.Event]:
        """Mark this worker thread as reading until the block ends; yields the closing event."""
        thread = threading.current_thread()
        with self._lock:
            self._threads.add(thread)
        try:
            yield self.closing
        finally:
            with self._lock:
                self._threads.discard(thread)
                self._done_reading.notify_all()

    def call(self, app: App[Any], callback: Callable[..., Any], *args: Any) -> None:
        """Run `callback(*args)` on the event loop, unless the screen is closing."""
        if self.closing.is_set():
            return
        try:
            app.call_from_thread(callback, *args)
        except RuntimeError:  # the app stopped meanwhile
            pass

    def fail(self, app: App[Any], error: BaseException) -> None:
        """Show `error` as a dialog, unless the screen is closing."""
        self.call(app, report_failure, app, error)

    async def stop(self) -> None:
        """Stop every read and wait (a little) for them to end, without blocking the loop."""
        with self._lock:
            for event in self._events:
                event.set()
            if not self._threads:
                return
        # Waiting for the reads, not joining their threads: thread workers run in asyncio's
        # pool, whose threads never end (a join waited out its timeout) and may be this one.
        await asyncio.to_thread(self._wait_for_reads, JOIN_SECONDS)

    def _wait_for_reads(self, timeout: float) -> None:
        with self._lock:
            self._done_reading.wait_for(lambda: not self._threads, timeout)
