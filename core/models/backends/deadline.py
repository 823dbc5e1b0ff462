"""A whole-call deadline: `read_timeout` bounds each read, so a server that trickles a byte at a
time could hold a call forever; at its deadline the call's connection is cut."""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from visinstruct.core.errors import BackendError


class _Watchdog:
    """One daemon thread for every call's deadline (a timer thread per call would cost more
    than a fast call)."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._cancelled: set[int] = set()
        self._ids = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, seconds: float, cut: Callable[[], None]) -> int:
        with self._wake:
            ticket = next(self._ids)
            heapq.heappush(self._due, (time.monotonic() + seconds, ticket, cut))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="call-deadlines",
                                                daemon=True)
                self._thread.start()
            if self._due[0][1] == ticket:  # sooner than any other: wake the thread for it
                self._wake.notify()
            return ticket

    def cancel(self, ticket: int) -> None:
        with self._wake:
            self._cancelled.add(ticket)
            if len(self._cancelled) > 1024 and 2 * len(self._cancelled) > len(self._due):
                # Most calls end long before their deadline: drop their entries in one go.
                self._due = [due for due in self._due if due[1] not in self._cancelled]
                heapq.heapify(self._due)
                self._cancelled.clear()

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._due and self._due[0][1] in self._cancelled:
                    self._cancelled.discard(heapq.heappop(self._due)[1])
                if not self._due:
                    self._wake.wait(60)
                    continue
                wait = self._due[0][0] - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                _, ticket, cut = heapq.heappop(self._due)
            try:
                cut()
            except Exception:  # noqa: BLE001,S110 - a connection already gone is cut enough
                pass


_WATCHDOG = _Watchdog()


class Deadline:
    """Whether a call's deadline passed (its connection was cut then)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self.over = False  # the block ended: a late deadline must not cut a reused connection
        self.lock = threading.Lock()

    def error(self, target: str = "") -> BackendError:
        """The transient CallTimeout error a call cut at its deadline fails with."""
        text = f"CallTimeout: no whole reply within call_timeout = {self.seconds:g} s"
        return BackendError(f"{target}: {text}" if target else text,
                            kind=BackendError.TRANSIENT, error_class="CallTimeout")


@contextmanager
def call_deadline(seconds: float, cut: Callable[[], None]) -> Iterator[Deadline]:
    """Run the block with `cut()` called if it is still running after `seconds`."""
    deadline = Deadline(seconds)

    def fire() -> None:
        with deadline.lock:
            if not deadline.over:
                deadline.expired = True
                cut()

    ticket = _WATCHDOG.add(seconds, fire)
    try:
        yield deadline
    finally:
        with deadline.lock:
            deadline.over = True
        _WATCHDOG.cancel(ticket)


def cut_socket(sock: socket.socket | None) -> None:
    """End an exchange now: a read blocked on `sock` (in another thread) returns at once."""
    if sock is not None:
        sock.shutdown(socket.SHUT_RDWR)


def socket_of(stream: Any) -> socket.socket | None:
    """The socket under a urllib3 response (what botocore streams read), or None."""
    connection = getattr(stream, "_connection", None)
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        return sock
    raw = getattr(getattr(getattr(stream, "_fp", None), "fp", None), "raw", None)
    sock = getattr(raw, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None
