"""A run's progress: units done and failed, pairs kept, the budget, and the stop and pause switches.

One object per run, handed to the workers, the batch stages and metering, which all count here.
"""

from __future__ import annotations

import threading

from visinstruct.core.events import Emit, ImageDone
from visinstruct.core.records import RunState


class Progress:
    """The run's counters and switches; counting is safe from any thread."""

    def __init__(self, emit: Emit, cancel: threading.Event,
                 pause: threading.Event | None = None) -> None:
        self.emit = emit
        self.cancel = cancel
        self.pause = pause
        self.done_units = 0
        self.failed_units = 0
        self.total_units = 0
        self.kept_pairs = 0     # kept pairs in the store, kept current as pairs are judged
        self.budget_hit = False
        self._lock = threading.Lock()

    def start(self, total: int, done: int, kept: int) -> None:
        """Begin from what the store already holds."""
        with self._lock:
            self.total_units, self.done_units, self.kept_pairs = total, done, kept

    def finish_unit(self, image_id: int, task: str, ok: bool) -> None:
        """Count a unit that finished its last stage (or failed for good) and say so."""
        with self._lock:
            self.done_units += 1
            if not ok:
                self.failed_units += 1
            done = self.done_units
        self.emit(ImageDone(image_id, task, ok, done, self.total_units))

    def add_kept(self, kept: int) -> None:
        """Pairs newly kept, once their judgements are stored."""
        with self._lock:
            self.kept_pairs += kept

    def stop_for_budget(self) -> None:
        """The budget is spent: stop taking work, once."""
        with self._lock:
            if self.budget_hit:
                return
            self.budget_hit = True
        self.cancel.set()

    @property
    def stopped(self) -> bool:
        """Stop was asked for (by the user or the budget)."""
        return self.cancel.is_set()

    def hold_while_paused(self) -> None:
        """Wait (calls in flight finish) while paused, until resumed or stopped."""
        while self.pause is not None and self.pause.is_set() and not self.cancel.is_set():
            self.cancel.wait(0.1)

    def outcome(self) -> RunState:
        """How a run that did not fail ended."""
        if self.budget_hit:
            return RunState.BUDGET
        # A stop that lands after the last unit changes nothing.
        if self.cancel.is_set() and self.done_units < self.total_units:
            return RunState.INTERRUPTED
        return RunState.FINISHED
