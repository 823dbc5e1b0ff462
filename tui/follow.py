"""Following: poll a store that another live process writes and hand each read to the UI."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from visinstruct.core.config import Config
from visinstruct.core.store.database import Store
from visinstruct.core.store.snapshots import StoreReader, StoreSnapshot

Deliver = Callable[[StoreSnapshot], None]
COST_SECONDS = 5.0


class StoreFollower:
    """Reads the store every `poll_seconds` on the calling (worker) thread until stopped.

    Each read after the first costs only what was written since. The cost (the one read that
    grows with the store) is left out of the first read, so the monitor fills at once, and is
    then refreshed at most every 5 s, or less often when it is slow to compute.
    """

    def __init__(self, store: Store, config: Config, poll_seconds: float, deliver: Deliver,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self.reader = StoreReader(store, config)
        self.poll_seconds = max(0.05, poll_seconds)
        self.deliver = deliver
        self.clock = clock
        self.polls = 0

    def follow(self, stop: threading.Event) -> None:
        """Poll until `stop` is set; errors end the loop and reach the caller."""
        cost_due = self.clock() + self.poll_seconds  # not in the first read
        while not stop.is_set():
            started = self.clock()
            with_cost = started >= cost_due
            snapshot = self.reader.snapshot(with_cost=with_cost)
            if with_cost:
                took = self.clock() - started
                cost_due = self.clock() + max(COST_SECONDS, 10 * took)
            self.polls += 1
            if stop.is_set():
                return
            self.deliver(snapshot)
            # Nothing being written: look less often, but still notice a new run.
            wait = self.poll_seconds if snapshot.progress.status == "running" \
                else self.poll_seconds * 3
            if stop.wait(wait):
                return
