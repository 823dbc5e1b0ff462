"""Who writes the store the app shows: this app, holding the writer lock, or another live process.

The app owns its store unless another live process holds the store's writer lock (a headless
run, `prepare`, `evaluate`); then it follows that process's run. Told by the lock, which dies
with its process, never by the pid a run row remembers.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from visinstruct.core.errors import StoreError
from visinstruct.core.store.database import Store
from visinstruct.core.store.writer_lock import holder_pid, writer_lock


class StoreOwnership:
    """The app's hold on its store's writer lock, taken at start and whenever the writer ends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.owned = False
        self.writer_pid: int | None = None   # the live process writing it when not ours
        self._hold = ExitStack()

    def claim(self) -> bool:
        """Take the writer lock unless another live process holds it; True once the store is
        ours."""
        if self.owned:
            return True
        pid = holder_pid(self.path)
        if pid is None:
            try:
                self._hold.enter_context(writer_lock(self.path))
            except StoreError:  # another process took it between the look and the lock
                pid = holder_pid(self.path) or -1
            else:
                self.owned, self.writer_pid = True, None
                return True
        self.writer_pid = pid
        return False

    def writer_still_there(self) -> bool:
        """While following: the other writer still holds the lock (its pid updated if another
        took over)."""
        if self.owned:
            return False
        pid = holder_pid(self.path)
        if pid is not None:
            self.writer_pid = pid
        return pid is not None

    def refusal(self) -> StoreError:
        """Why a run cannot start here: another live process writes the store."""
        who = writer_name(self.writer_pid)
        return StoreError(f"{self.path}: {who} is writing this store; stop it first or use "
                          "another --db (`visinstruct tui --db` follows it)")

    def release(self) -> None:
        """Let the lock go (a run still going in this process keeps its own hold)."""
        self._hold.close()
        self.owned = False


def writer_name(pid: int | None) -> str:
    """'pid 4711', or 'another process' when the lock names none."""
    return f"pid {pid}" if pid is not None and pid > 0 else "another process"


def owner_line(path: Path, ownership: StoreOwnership, store: Store, run_id: int | None) -> str:
    """The header: which store, whether this open made it, and who writes it (never a pid that
    is not running: the pid is the live lock holder's)."""
    name = path.name + (" (created now)" if store.created else "")
    if ownership.owned:
        if store.readonly:
            return f"{name} · read-only file: browse only"
        return f"{name} · this window writes it"
    if ownership.writer_pid is None:
        return name
    run = f"run {run_id} of " if run_id is not None else ""
    return f"{name} · following {run}{writer_name(ownership.writer_pid)}"
