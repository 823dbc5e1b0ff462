"""The one guard against two processes writing a store: a live run's row names its process."""

from __future__ import annotations

import os
import socket

from visinstruct.core.errors import StoreError
from visinstruct.core.store.database import Store


def live_run_pid(store: Store) -> int | None:
    """The pid of another process on this host whose run is still going, if there is one.

    Runs on other hosts cannot be checked, so they never block (a shared store over a
    network file system is not supported anyway).
    """
    host = socket.gethostname()
    for pid, run_host in store.query("SELECT pid, host FROM runs WHERE status = 'running'"):
        if run_host == host and pid and pid != os.getpid() and _alive(int(pid)):
            return int(pid)
    return None


def refuse_live_writer(store: Store, hint: str) -> None:
    """Raise StoreError when another live process writes this store; `hint` says what to do."""
    pid = live_run_pid(store)
    if pid is not None:
        raise StoreError(f"{store.path}: another run (pid {pid}) is writing this store; {hint}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True
