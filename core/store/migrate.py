"""Applying the numbered migrations of `schema.py` to a store, each in one transaction."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visinstruct.core.errors import StoreError

if TYPE_CHECKING:
    from sqlite_utils import Database

APPLICATION = "visinstruct"

MigrationBody = str | Callable[["Database"], None]
Migration = tuple[int, str, MigrationBody]


def latest_version(migrations: Sequence[Migration]) -> int:
    """The highest migration number: what `meta.schema_version` says after a full migration."""
    return max(number for number, _title, _body in migrations)


def schema_version(conn: sqlite3.Connection, path: Path, latest: int) -> tuple[int, set[int]]:
    """The applied schema version and migration numbers (0 and none for an empty file).

    Refuses a file that is not ours and one written by a newer visinstruct.
    """
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if tables and "meta" not in tables:
        shown = ", ".join(sorted(tables)[:5])
        raise StoreError(f"{path}: not a visinstruct store (it holds other tables: {shown}); "
                         "use another --db path")
    if "meta" not in tables:
        return 0, set()
    meta = dict(conn.execute("SELECT key, value FROM meta"))
    if meta.get("application") != APPLICATION:
        raise StoreError(f"{path}: belongs to another application "
                         f"({meta.get('application', 'unknown')!r}); use another --db path")
    try:
        version = int(meta.get("schema_version", "0"))
        listed = meta.get("applied_migrations")
        applied = ({int(n) for n in listed.split(",") if n} if listed is not None
                   else set(range(1, version + 1)))
    except ValueError:
        raise StoreError(f"{path}: its schema_version {meta.get('schema_version')!r} is not a "
                         "number; the store is damaged, use another --db path") from None
    if version > latest:
        raise StoreError(f"{path}: written by a newer visinstruct (schema {version}; this "
                         f"version knows up to {latest}); upgrade visinstruct to open it")
    return version, applied


def migrate(conn: sqlite3.Connection, path: Path, migrations: Sequence[Migration], *,
            before_first_write: Callable[[sqlite3.Connection], None] | None = None) -> None:
    """Apply every migration this store lacks, in ascending order, one transaction each.

    `before_first_write` runs once the file is known to be ours (the store turns WAL on).
    Numbers may have gaps (engineers reserve them); a store records which numbers it has,
    so a migration merged later with a lower number still runs once.
    """
    latest = latest_version(migrations)
    version, applied = schema_version(conn, path, latest)
    if before_first_write is not None:
        before_first_write(conn)
    pending = [m for m in sorted(migrations, key=lambda m: m[0]) if m[0] not in applied]
    if not pending:
        return
    db = _sqlite_utils().Database(conn, recursive_triggers=False, execute_plugins=False)
    for number, title, body in pending:
        conn.execute("BEGIN IMMEDIATE")
        # Another process may have migrated while this one waited for the write lock.
        applied |= _applied_now(conn)
        if number in applied:
            conn.execute("ROLLBACK")
            continue
        try:
            if not applied:
                conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('application', ?)",
                             (APPLICATION,))
            if callable(body):
                body(db)
            else:
                for statement in split_sql(body):
                    conn.execute(statement)
            if not conn.in_transaction:
                # executescript() or `with conn:` committed half a migration: refuse loudly.
                raise StoreError(f"{path}: migration {number} ({title}) committed its own "
                                 "transaction; write it with db.execute(), not executescript()")
            applied.add(number)
            version = max(version, *applied)
            conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", (
                ("schema_version", str(version)),
                ("applied_migrations", ",".join(str(n) for n in sorted(applied)))))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _applied_now(conn: sqlite3.Connection) -> set[int]:
    """The migration numbers committed so far, read inside the migration's transaction."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
                        ).fetchone():
        return set()
    meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN "
                             "('schema_version', 'applied_migrations')"))
    listed = meta.get("applied_migrations")
    try:
        if listed is not None:
            return {int(n) for n in listed.split(",") if n}
        return set(range(1, int(meta.get("schema_version", "0")) + 1))
    except ValueError:
        return set()


def _sqlite_utils() -> Any:
    """sqlite-utils, imported without pandas and numpy unless something else loaded them.

    It imports both only to accept DataFrames and numpy values, which the store never
    passes; loading them would cost a fresh store most of a second and ~100 MB of RSS.
    """
    blocked = [name for name in ("pandas", "numpy") if name not in sys.modules]
    if "sqlite_utils" in sys.modules:
        blocked = []
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` fail
    try:
        import sqlite_utils
    finally:
        for name in blocked:
            del sys.modules[name]
    return sqlite_utils


def split_sql(script: str) -> Iterator[str]:
    """The statements of an SQL script; a trigger's body or a quoted `;` stays in one piece."""
    statement = ""
    pieces = script.split(";")
    for piece in pieces[:-1]:
        statement += piece + ";"
        if sqlite3.complete_statement(statement):
            if statement.strip(" \t\n;"):
                yield statement.strip()
            statement = ""
    rest = (statement + pieces[-1]).strip()
    if rest:
        yield rest
