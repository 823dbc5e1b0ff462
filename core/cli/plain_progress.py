"""A plain progress line on stderr at a steady interval, for logs: when stderr is not a terminal.

`run --headless 2> run.log` and `evaluate | tail` otherwise show nothing until the end (a
live display only draws on a terminal). The interval is 10 seconds;
VISINSTRUCT_PROGRESS_SECONDS sets another.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable

from visinstruct.core.errors import InputError
from visinstruct.core.sanitize.redact import redact

INTERVAL_ENV = "VISINSTRUCT_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 10.0


def progress_interval() -> float:
    """Seconds between lines: $VISINSTRUCT_PROGRESS_SECONDS, else 10."""
    text = os.environ.get(INTERVAL_ENV, "").strip()
    if not text:
        return DEFAULT_INTERVAL
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds <= 86_400:  # NaN fails too
        raise InputError(f"{INTERVAL_ENV}={text}: give seconds between progress lines, "
                         "above 0 and at most 86400")
    return seconds


class Ticker:
    """Writes `line()` to stderr every `interval` seconds on a daemon thread, while entered."""

    def __init__(self, line: Callable[[], str], interval: float) -> None:
        self._line = line
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.write()

    def write(self) -> None:
        """One line now (none when `line()` has nothing to say yet)."""
        text = self._line()
        if not text:
            return
        try:
            sys.stderr.write(redact(text) + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # stderr closed or full: progress is not worth a crash
            self._stop.set()

    def __enter__(self) -> Ticker:
        self._thread = threading.Thread(target=self._loop, name="progress-line", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
