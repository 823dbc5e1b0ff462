"""Opening the store for a command: SQLite trouble as one line, and no new store left on exit 2."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from visinstruct.core.errors import InputError
from visinstruct.core.store import opening
from visinstruct.core.store.database import Store


@contextmanager
def opened_store(path: Path, *, for_writing: bool = False) -> Iterator[Store]:
    """The store at `path`, closed afterwards; `for_writing` refuses a read-only one (exit 2).

    A store this command created is removed again if the command ends in bad input, so a
    refused run leaves nothing behind.
    """
    store = Store(path, for_writing=for_writing)
    try:
        yield store
    except sqlite3.DatabaseError as exc:
        store.close()
        raise opening.translate(Path(path), exc) from exc
    except InputError:
        store.close()
        if store.created:
            remove_store_files(Path(path))
        raise
    finally:
        store.close()


def remove_store_files(path: Path) -> None:
    """Delete a store file with its -wal and -shm companions."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
