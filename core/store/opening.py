"""Checks on a store file around opening it: damage, truncation, and whether it can be written."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from visinstruct.core.errors import StoreError

SQLITE_MAGIC = b"SQLite format 3\x00"
# Words SQLite uses when a file's pages or schema are not what they should be.
_DAMAGE_WORDS = ("malformed", "not a database", "disk image", "corrupt", "no such table",
                 "no such column", "database schema has changed")


def recover_hint(path: Path) -> str:
    """The one-line way to save what a damaged store still holds."""
    return f"to save what it holds: sqlite3 {path} .recover | sqlite3 recovered.db"


def damaged(path: Path, detail: object) -> StoreError:
    """The error for a store whose file is damaged: names the file and the recovery command."""
    return StoreError(f"{path}: the store is damaged ({detail}); {recover_hint(path)}")


def is_damage(error: sqlite3.Error) -> bool:
    """Whether an SQLite error means the file is damaged rather than busy or misused."""
    text = str(error).lower()
    return any(word in text for word in _DAMAGE_WORDS)


def translate(path: Path, error: sqlite3.Error) -> StoreError:
    """One line for an SQLite error met while using the store at `path`."""
    if is_damage(error):
        return damaged(path, error)
    return StoreError(f"{path}: cannot use the store: {error}")


def check_header(path: Path) -> None:
    """Refuse a file that is not SQLite, or whose header says it was longer than it is."""
    size = path.stat().st_size
    if size == 0:
        return
    with path.open("rb") as handle:
        header = handle.read(100)
    if header[:16] != SQLITE_MAGIC:
        if SQLITE_MAGIC.startswith(header[:16]):
            raise damaged(path, f"only {size} bytes, cut off inside the header")
        raise StoreError(f"{path}: not a SQLite file, so not a visinstruct store")
    if len(header) < 100:
        raise damaged(path, f"only {size} bytes, cut off inside the header")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # SQLite trusts the header's page count only while these two counters agree.
    counter_valid = header[24:28] == header[92:96]
    wal = path.with_name(path.name + "-wal")
    # Pages still in the WAL may lie past the file's end: only a file without one is judged.
    wal_pending = wal.exists() and wal.stat().st_size > 0
    if counter_valid and pages and not wal_pending and size < pages * page_size:
        raise damaged(path, f"truncated: {size:,} bytes where its header says "
                            f"{pages * page_size:,}")


def unwritable_reason(path: Path) -> str | None:
    """Why the store at `path` cannot be written (None when it can).

    SQLite's WAL needs its -wal and -shm files beside the store, so the folder counts too.
    """
    folder = path.parent
    if path.exists() and not os.access(path, os.W_OK):
        return "the file is not writable"
    if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
        return f"its folder {folder} is not writable (SQLite writes {path.name}-wal beside it)"
    return None


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the store's pragmas; read-only ones never write to the file or folder."""
    try:
        if readonly:
            conn = _connect_readonly(path)
        else:
            conn = sqlite3.connect(str(path), timeout=60, check_same_thread=False,
                                   isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the store: {exc}") from exc
    try:
        conn.execute("PRAGMA busy_timeout = 60000")
        conn.execute("PRAGMA foreign_keys = ON")
        if not readonly:
            conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise translate(path, exc) from exc
    return conn


def check_pages(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a store with damaged pages (a broken b-tree, a cell out of range, a NULL in a
    NOT NULL column), which a read may pass over without a word. `PRAGMA quick_check` reads
    every page once, with none of integrity_check's index cross-checks: about a second per
    quarter gigabyte."""
    try:
        found = [str(row[0]) for row in conn.execute("PRAGMA quick_check(3)")]
    except sqlite3.DatabaseError as exc:
        raise translate(path, exc) from exc
    if found != ["ok"]:
        problems = [line for line in found if not line.startswith("***")]
        detail = "; ".join(" ".join(line.split()) for line in problems) or "quick_check failed"
        raise damaged(path, f"quick_check: {detail}")


def _connect_readonly(path: Path) -> sqlite3.Connection:
    uri = f"file:{quote(str(path.resolve()))}"
    wal = path.with_name(path.name + "-wal")
    if not wal.exists():
        # No connection has the store open (a WAL store's -wal lives while one does): read
        # the file as it stands. SQLite would otherwise make -wal and -shm files with the
        # store's own mode (0444 for a chmod-444 store), which then refuse the next writer.
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=60,
                               check_same_thread=False, isolation_level=None)
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60, check_same_thread=False,
                           isolation_level=None)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError as exc:
        if "unable to open" not in str(exc):
            conn.close()
            raise
        conn.close()
    # A WAL store in a folder nobody may write: SQLite cannot make its -shm file there, so
    # read the file as it stands (a closed store has everything checkpointed into it).
    if wal.exists() and wal.stat().st_size > 0:
        raise StoreError(f"{path}: its folder is read-only and {wal.name} holds changes not yet "
                         "in the store; copy both files to a writable folder and open it there")
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=60,
                           check_same_thread=False, isolation_level=None)


def missing_tables(conn: sqlite3.Connection, expected: frozenset[str]) -> list[str]:
    """The tables and views of a fresh store that this store lacks."""
    present = {row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    return sorted(expected - present)


def applied_version(conn: sqlite3.Connection) -> int:
    """The schema version committed so far (read inside a migration's transaction)."""
    if not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone():
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return int(row[0]) if row and str(row[0]).isdigit() else 0
