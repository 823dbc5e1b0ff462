"""Opening the store for a command: SQLite trouble as one line, and no new store left on exit 2."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from visinstruct.core.errors import InputError
from visinstruct.core.store import opening
from visinstruct.core.store.database import Store
from visinstruct.core.store.files import remove_store_files
from visinstruct.core.store.writer_lock import writer_lock


@contextmanager
def opened_store(path: Path, *, for_writing: bool = False) -> Iterator[Store]:
    """The store at `path`, closed afterwards; `for_writing` refuses a read-only one (exit 2),
    and a store only read is first checked for damaged pages (exit 2 naming the damage).

    A writing command holds the store's writer lock throughout (another writer: exit 2
    before anything is touched); a store it created is removed again if the command ends in
    bad input, so a refused run leaves nothing behind.
    """
    with writer_lock(path) if for_writing else nullcontext():
        # Under the writer lock no other writer can be creating this file at the same time,
        # so `created` is true only for the process that made it, and removing it is safe.
        store = Store(path, for_writing=for_writing)
        try:
            if not for_writing:
                # Reading commands (export, status, analyze) would pass over a damaged page
                # without a word; writing ones meet any damage as they write.
                opening.check_pages(store.reader(), Path(path))
            yield store
        except sqlite3.DatabaseError as exc:
            store.close()
            raise opening.translate(Path(path), exc) from exc
        except InputError:
            store.close()
            if store.created and for_writing:
                remove_store_files(Path(path))
            raise
        finally:
            store.close()
