"""Fewer garbage collections while a run streams objects through its queues."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Objects allocated (net) before a young collection. CPython's default of 700 makes a run
# scan its few thousand queued writes over and over and promote them to the old generation,
# whose full scans then cost a tenth of the run; this many keeps young collections cheap
# and rare while memory stays bounded by the store's write queue.
_YOUNG_THRESHOLD = 5_000

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, ...] = ()


@contextmanager
def run_collector() -> Iterator[None]:
    """Within the block: start-up objects frozen out of collections, young collections rarer.

    Nested or overlapping blocks (two runs in one process) share one setting; the last to
    leave restores the thresholds it found and thaws the frozen objects.
    """
    global _depth, _saved
    with _lock:
        _depth += 1
        if _depth == 1:
            _saved = gc.get_threshold()
            gc.freeze()  # modules, config, templates: alive for the whole run anyway
            if _saved[0] and _saved[0] < _YOUNG_THRESHOLD:
                gc.set_threshold(_YOUNG_THRESHOLD, *_saved[1:])
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.set_threshold(*_saved)
                gc.unfreeze()
