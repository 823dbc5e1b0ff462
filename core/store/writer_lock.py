"""The writer lock: one process at a time writes a store, proved by the kernel, not by a row.

A process that writes (a run, `prepare`, `evaluate`) holds an exclusive `flock` on a file
beside the store (`STORE-lock`) from before it opens the store until after it closes it.
The lock dies with its process, so a killed run never blocks the next one, and two runs
started together on a new path cannot both believe they created the store (the loser
refuses before it touches anything). The lock file holds the holder's pid, for messages.
Within one process the lock is re-entrant: the app's run and its own readers share it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from visinstruct.core.errors import StoreError

LOCK_SUFFIX = "-lock"

_held: dict[str, list[int]] = {}  # real lock path -> [fd, depth], this process's holds
_held_guard = threading.Lock()


def lock_path(store_path: Path | str) -> Path:
    """The lock file of a store: beside the store's real file (symlinks resolved)."""
    real = Path(os.path.realpath(store_path))
    return real.with_name(real.name + LOCK_SUFFIX)


def holder_pid(store_path: Path | str) -> int | None:
    """The pid of another live process that holds the store's writer lock, else None.

    A pid the lock file names but that holds no lock (a killed run) is not a holder.
    """
    path = lock_path(store_path)
    with _held_guard:
        if str(path) in _held:
            return None  # this process is the writer
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None  # no lock file: nobody has written with a lock
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            return _pid_in(fd) or -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def refuse_live_writer(store_path: Path | str, hint: str) -> None:
    """StoreError (exit 2) when another live process writes this store; `hint` says what to do.

    Told by the lock, which dies with its process: a run killed with SIGKILL leaves a
    `running` row but no writer.
    """
    pid = holder_pid(store_path)
    if pid is not None:
        raise _refusal(store_path, pid, hint)


@contextmanager
def writer_lock(store_path: Path | str, hint: str = "stop it first or use another --db"
                ) -> Iterator[None]:
    """Hold the store's writer lock for the block; StoreError (exit 2) if another process does.

    Refusing happens before anything is created or written. A lock file that cannot be
    created (a read-only folder) is no lock at all: such a store cannot be written anyway,
    and the store's own checks say so.
    """
    path = lock_path(store_path)
    key = str(path)
    with _held_guard:
        if key in _held:
            _held[key][1] += 1
            counted = True
        else:
            fd = _acquire(path, store_path, hint)
            if fd is not None:
                _held[key] = [fd, 1]
            counted = fd is not None
    try:
        yield
    finally:
        if counted:
            with _held_guard:
                entry = _held[key]
                entry[1] -= 1
                if entry[1] == 0:
                    del _held[key]
                    _release(path, entry[0])


def _acquire(path: Path, store_path: Path | str, hint: str) -> int | None:
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            pid = _pid_in(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise _refusal(store_path, pid, hint) from None
            return None
        # The holder before us may have removed the file after we opened it: our lock is on
        # a file nobody else will open, so take the lock again on the one at the path.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except OSError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            return fd
        os.close(fd)


def _release(path: Path, fd: int) -> None:
    # Removed while still locked, so a process that opens it next makes a new file.
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
    os.close(fd)


def _refusal(store_path: Path | str, pid: int | None, hint: str) -> StoreError:
    who = f"another process (pid {pid})" if pid and pid > 0 else "another process"
    return StoreError(f"{store_path}: {who} is writing this store; {hint}")


def _pid_in(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
