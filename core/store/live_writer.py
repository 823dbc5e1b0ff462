"""The one guard against two processes writing a store: the writer lock, not a stored pid."""

from __future__ import annotations

from visinstruct.core.errors import StoreError
from visinstruct.core.store.database import Store
from visinstruct.core.store.writer_lock import holder_pid


def live_run_pid(store: Store) -> int | None:
    """The pid of another live process writing this store (-1 if it cannot be told), else None.

    Told by the writer lock, which dies with its process: a run killed with SIGKILL leaves
    a `running` row but no writer.
    """
    return holder_pid(store.path)


def refuse_live_writer(store: Store, hint: str) -> None:
    """Raise StoreError when another live process writes this store; `hint` says what to do."""
    pid = live_run_pid(store)
    if pid is not None:
        who = f"another process (pid {pid})" if pid > 0 else "another process"
        raise StoreError(f"{store.path}: {who} is writing this store; {hint}")
