"""Stop a slow read: SQLite's progress handler ends a query soon after an event is set."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from visinstruct.core.store.database import Store

STEPS = 1000  # SQLite VM steps between looks at the event: microseconds apart


class ReadCancelled(Exception):
    """The read was stopped because its cancel event was set."""


@contextmanager
def interruptible(store: Store, cancel: threading.Event | None) -> Iterator[None]:
    """Reads on this thread's connection stop with ReadCancelled once `cancel` is set."""
    if cancel is None:
        yield
        return
    if cancel.is_set():
        raise ReadCancelled()
    conn = store.reader()
    conn.set_progress_handler(lambda: 1 if cancel.is_set() else 0, STEPS)
    try:
        yield
    except sqlite3.OperationalError as exc:
        if cancel.is_set():
            raise ReadCancelled() from exc
        raise
    finally:
        conn.set_progress_handler(None, 0)
