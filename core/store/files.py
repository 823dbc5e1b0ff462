"""A store's files on disk: the database and its companions, which no command may write over."""

from __future__ import annotations

import os
from pathlib import Path

from visinstruct.core.errors import InputError
from visinstruct.core.store.writer_lock import LOCK_SUFFIX

# The database, SQLite's WAL, shared-memory index and rollback journal, and the writer lock.
COMPANION_SUFFIXES = ("", "-wal", "-shm", "-journal", LOCK_SUFFIX)


def store_files(store: Path | str) -> list[Path]:
    """The store's file and its companions, as real paths (symlinks to the store resolved)."""
    real = Path(os.path.realpath(store))
    return [real.with_name(real.name + suffix) for suffix in COMPANION_SUFFIXES]


def remove_store_files(store: Path | str) -> None:
    """Delete a store with its companions (only ever a store this process just created).

    The lock file stays: its holder, this process, removes it when it lets go.
    """
    for path in store_files(store):
        if not path.name.endswith(LOCK_SUFFIX):
            path.unlink(missing_ok=True)


def refuse_store_target(out: Path | str, store: Path | str, flag: str = "--out") -> None:
    """InputError (exit 2) when writing `out` would write over the store or one of its files.

    Checked by real path (a symlink to the store counts) and, for files that exist, by
    identity (a hard link counts too).
    """
    target = Path(os.path.realpath(out))
    try:
        target_stat = os.stat(target)
    except OSError:
        target_stat = None
    for own, suffix in zip(store_files(store), COMPANION_SUFFIXES, strict=True):
        same = target == own
        if not same and target_stat is not None:
            try:
                same = os.path.samestat(target_stat, os.stat(own))
            except OSError:
                same = False
        if same:
            what = f"the store's own {suffix} file" if suffix else "the store itself"
            raise InputError(f"{out}: is {what} ({store}); choose another {flag}")
