"""How pipeline events reach the UI: a thread-safe buffer, drained into one coalescing message."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

from textual.message import Message

from visinstruct.core.events import Event
from visinstruct.core.store.snapshots import ScoreCounts, StoreSnapshot

StoreRead: TypeAlias = StoreSnapshot | ScoreCounts

if TYPE_CHECKING:
    from visinstruct.tui.state import RunState


class EventBuffer:
    """Collects events and store snapshots from worker threads until the UI drains them.

    Worker threads only append; the first item after a drain calls `wake` (which posts one
    EventsArrived message), so a burst of thousands of events costs one message, and an idle
    app runs no timer at all.
    """

    def __init__(self, wake: Callable[[], None] | None = None) -> None:
        self._events: deque[Event] = deque()
        self._snapshots: deque[tuple[int, StoreRead]] = deque()
        self._lock = threading.Lock()
        self._armed = False
        self.wake = wake
        self.received = 0

    def _arm(self) -> None:
        # Unlocked check: two threads may both wake, and the second message is coalesced.
        if not self._armed:
            self._armed = True
            if self.wake is not None:
                self.wake()

    def emit(self, event: Event) -> None:
        """The pipeline's `emit`: called from any thread."""
        self._events.append(event)
        self._arm()

    def offer_snapshot(self, snapshot: StoreRead, generation: int) -> None:
        """A store read made for `generation` (older generations are dropped when drained)."""
        with self._lock:
            self._snapshots.append((generation, snapshot))
        self._arm()

    def disarm(self) -> None:
        """Called by the drain before it takes items: anything added later wakes it again."""
        self._armed = False

    def drain_events(self, limit: int = 100_000) -> list[Event]:
        """Take the events buffered so far (at most `limit`, so one drain stays short)."""
        events: list[Event] = []
        pop = self._events.popleft
        for _ in range(min(limit, len(self._events))):
            events.append(pop())
        self.received += len(events)
        return events

    def drain_snapshots(self) -> list[tuple[int, StoreRead]]:
        with self._lock:
            taken = list(self._snapshots)
            self._snapshots.clear()
        return taken

    def __len__(self) -> int:
        return len(self._events)


class EventsArrived(Message, bubble=False):
    """Posted (from a worker thread) when the buffer gets its first item since the last drain."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EventsArrived)


class RunStateChanged(Message, bubble=False):
    """The app's RunState absorbed new events or a store read; screens redraw from it.

    The message carries no data of its own, so a newer one can replace any that a busy
    screen has not handled yet: bursts of progress collapse into one redraw.
    """

    def __init__(self, state: RunState) -> None:
        super().__init__()
        self.state = state

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunStateChanged)


class SampleChosen(Message):
    """The user picked a judged sample to look at in review."""

    def __init__(self, image_id: int, task: str) -> None:
        super().__init__()
        self.image_id = image_id
        self.task = task
