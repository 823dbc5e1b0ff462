"""Garbage collection paced by the clock while a run streams objects through its queues."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# A run allocates a steady stream of short-lived objects (requests, replies, queued writes)
# and makes almost no reference cycles, yet CPython's automatic collector counts allocations
# and would scan the few thousand objects in flight several hundred times a second: about a
# tenth of a zero-latency run went there. Within a run it is off; a collection every few
# seconds still frees whatever cycles do appear (an exception's traceback, a library's).
_EVERY_S = 5.0

_lock = threading.Lock()
_depth = 0
_was_enabled = True
_stop: threading.Event | None = None
_pacer: threading.Thread | None = None


def _pace(stop: threading.Event) -> None:
    while not stop.wait(_EVERY_S):
        gc.collect()


@contextmanager
def run_collector() -> Iterator[None]:
    """Within the block: start-up objects frozen, automatic collection off, one every few seconds.

    Nested or overlapping blocks (two runs in one process) share one setting; the last to
    leave restores the collector as it found it and thaws the frozen objects.
    """
    global _depth, _was_enabled, _stop, _pacer
    with _lock:
        _depth += 1
        if _depth == 1:
            _was_enabled = gc.isenabled()
            gc.freeze()  # modules, config, templates: alive for the whole run anyway
            gc.disable()
            _stop = threading.Event()
            _pacer = threading.Thread(target=_pace, args=(_stop,), name="gc-pacer", daemon=True)
            _pacer.start()
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                assert _stop is not None and _pacer is not None
                _stop.set()
                _pacer.join(timeout=5)
                gc.unfreeze()
                if _was_enabled:
                    gc.enable()
