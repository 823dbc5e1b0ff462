"""The SQLite store: opening and migrating, one writer thread batching commits, read connections."""

from __future__ import annotations

import functools
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visinstruct.core.errors import StoreError
from visinstruct.core.sanitize.redact import redact
from visinstruct.core.store import opening, pair_tally
from visinstruct.core.store.migrate import Migration, latest_version, migrate, schema_version
from visinstruct.core.store.schema import MIGRATIONS

WriteFn = Callable[[sqlite3.Connection], Any]
_STOP = object()
_FIRST_OPEN_TRIES = 20  # "database is locked" while other processes make the same new store
_QUEUE_LIMIT = 1_000  # writes waiting for the writer; producers block past this (bounded RSS)


class RowRef:
    """The id of a row whose insert is queued: set by the writer when the insert runs.

    Writes run in queue order, so a later write may use `ref.id` (or bind the ref itself
    as an SQL parameter) without waiting for the commit.
    """

    __slots__ = ("id",)

    def __init__(self, row_id: int | None = None) -> None:
        self.id = row_id

    def __repr__(self) -> str:
        return f"RowRef({self.id})"


sqlite3.register_adapter(RowRef, lambda ref: ref.id)


@dataclass
class _Op:
    fn: WriteFn
    future: Future[Any] | None
    on_commit: Callable[[Any], None] | None
    on_error: Callable[[sqlite3.Connection, Exception], Any] | None = None


class Store:
    """One SQLite file; writes go through `write()` to a single writer thread.

    A store that cannot be written (file or folder) opens read-only: reads work and every
    write raises StoreError; `for_writing=True` refuses such a store at once instead.
    """

    def __init__(self, path: Path | str, *, batch_size: int = 500,
                 readonly: bool | None = None, for_writing: bool = False) -> None:
        self.path = Path(path)
        self._batch_size = batch_size
        self.created = not self.path.exists()  # made by this open (so removable on exit 2)
        reason = opening.unwritable_reason(self.path)
        if readonly is None:
            readonly = reason is not None and not self.created
        if for_writing and (readonly or reason is not None):
            raise StoreError(f"{self.path}: the store is read-only "
                             f"({reason or 'opened read-only'}); nothing was done")
        self.readonly = readonly
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self.failed_writes = 0
        self.last_write_error: BaseException | None = None
        self.failed_callbacks = 0
        self._pending: list[Any] = []
        self._pending_changed = threading.Condition()
        self._closed = False
        self._fold_due = time.monotonic() + pair_tally.FOLD_SECONDS
        if readonly:
            self._write_conn: sqlite3.Connection | None = None
            self._writer: threading.Thread | None = None
            self._check_readable()
            return
        self._write_conn = self._open_and_migrate()
        self._writer = threading.Thread(target=self._writer_loop, name="store-writer",
                                        daemon=True)
        self._writer.start()

    # -- opening ---------------------------------------------------------------------------
    def _open_and_migrate(self) -> sqlite3.Connection:
        if self.path.exists() and self.path.is_dir():
            raise StoreError(f"{self.path}: is a directory, not a store file; "
                             "pass a file path to --db")
        if self.path.exists():
            opening.check_header(self.path)
        parent = self.path.parent
        if not parent.exists():
            try:
                parent.mkdir(parents=True)
            except OSError as exc:
                raise StoreError(f"{self.path}: cannot create its folder: {exc.strerror}") from exc
        for attempt in range(_FIRST_OPEN_TRIES):
            conn = opening.connect(self.path)
            try:
                # WAL only once the file is known to be ours (migrate() checks that before any
                # write): the pragma rewrites the file header.
                migrate(conn, self.path, MIGRATIONS, before_first_write=_enable_wal)
                self._check_tables(conn)
                return conn
            except sqlite3.DatabaseError as exc:
                conn.close()
                # Several processes opening a new store at once: SQLite answers "locked" at
                # once, without waiting, where waiting could deadlock (turning WAL on); the
                # next try finds the file made and migrated by the other process.
                locked = isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
                if not locked or attempt == _FIRST_OPEN_TRIES - 1:
                    raise opening.translate(self.path, exc) from exc
                time.sleep(0.05 * (attempt + 1))
            except StoreError:
                conn.close()
                raise
        raise AssertionError("unreachable")

    def _check_readable(self) -> None:
        """Open a read-only store's first reader and check it is a whole store of this version."""
        opening.check_header(self.path)
        try:
            conn = self.reader()
            latest = latest_version(MIGRATIONS)
            version, applied = schema_version(conn, self.path, latest)
            if {number for number, _title, _body in MIGRATIONS} - applied:
                raise StoreError(
                    f"{self.path}: the store is read-only and needs an upgrade (schema {version}, "
                    f"this version uses {latest}); open it once where it is writable")
            self._check_tables(conn)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise opening.translate(self.path, exc) from exc
        except StoreError:
            self.close()
            raise

    def _check_tables(self, conn: sqlite3.Connection) -> None:
        missing = opening.missing_tables(conn, _fresh_tables(MIGRATIONS))
        if missing:
            raise opening.damaged(self.path, f"missing {', '.join(missing[:5])}")

    # -- writing ---------------------------------------------------------------------------
    def write(self, fn: WriteFn, on_commit: Callable[[Any], None] | None = None,
              on_error: Callable[[sqlite3.Connection, Exception], Any] | None = None,
              ) -> Future[Any]:
        """Queue `fn(conn)` for the writer; the future resolves after its batch commits.

        Should `fn` raise, its changes are undone and `on_error(conn, exc)` runs in their
        place (its result then counts as fn's); without one, the future holds the exception.
        """
        future: Future[Any] = Future()
        self._put(_Op(fn, future, on_commit, on_error))
        return future

    def write_nowait(self, fn: WriteFn, on_commit: Callable[[Any], None] | None = None) -> None:
        """Queue `fn(conn)` when nobody will wait for it (a failure is reported to on_commit
        callers only through the store's error log, so use it for bookkeeping rows)."""
        self._put(_Op(fn, None, on_commit))

    def _put(self, op: _Op) -> None:
        if self.readonly:
            raise StoreError(f"{self.path}: the store is read-only; this needs a writable store")
        if self._closed:
            raise StoreError(f"{self.path}: the store is closed")
        with self._pending_changed:
            # Producers wait only while the writer is far behind (bounded memory).
            while len(self._pending) >= _QUEUE_LIMIT:
                self._pending_changed.wait()
            self._pending.append(op)
            if len(self._pending) == 1:
                self._pending_changed.notify_all()

    def write_sync(self, fn: WriteFn) -> Any:
        """Run `fn(conn)` on the writer and wait for its commit; returns fn's result."""
        return self.write(fn).result()

    def flush(self) -> None:
        """Wait until every write queued so far has committed."""
        if not self.readonly:
            self.write(lambda conn: None).result()

    def _writer_loop(self) -> None:
        conn = self._write_conn
        assert conn is not None  # the writer runs only for stores opened for writing
        while True:
            # Take everything queued in one go: one lock round per batch, not per write.
            with self._pending_changed:
                while not self._pending:
                    self._pending_changed.wait()
                batch, self._pending = self._pending, []
                self._pending_changed.notify_all()
            stop_after = batch[-1] is _STOP
            ops = [op for op in batch if op is not _STOP]
            for start in range(0, len(ops), self._batch_size):
                self._run_batch(conn, ops[start:start + self._batch_size])
            if stop_after or time.monotonic() >= self._fold_due:
                self._fold_tally(conn)
            if stop_after:
                break

    def _fold_tally(self, conn: sqlite3.Connection) -> None:
        """Take the pairs and judgements written lately into the pair tally (store/pair_tally.py).

        Only a shortcut for readers (they count what is past the tally's marks themselves),
        so a failure here loses nothing and is not reported.
        """
        self._fold_due = time.monotonic() + pair_tally.FOLD_SECONDS
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                pair_tally.fold(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error:
            pass

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            for op in batch:
                self._fail(op, StoreError(f"{self.path}: cannot write: {exc}"))
            return
        results: list[tuple[_Op, Any, BaseException | None]] = []
        try:
            # The common case: every write succeeds, one transaction, no per-write overhead.
            results = [(op, op.fn(conn), None) for op in batch]
        except BaseException:  # noqa: BLE001 - redone write by write below
            conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
            results = [self._run_guarded(conn, op) for op in batch]
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            for op, _value, _err in results:
                self._fail(op, StoreError(f"{self.path}: commit failed: {exc}"))
            return
        for op, value, err in results:
            if err is not None:
                self._fail(op, err)
                continue
            if op.on_commit is not None:
                try:
                    op.on_commit(value)
                except Exception as exc:  # noqa: BLE001 - a listener must not stop the writer
                    self._callback_failed(exc)
            if op.future is not None:
                op.future.set_result(value)

    def _callback_failed(self, exc: Exception) -> None:
        """Say on stderr (once per store) that an after-commit callback raised."""
        self.failed_callbacks += 1
        if self.failed_callbacks == 1:
            print(redact(f"visinstruct: a callback after a commit to {self.path} failed: "
                         f"{type(exc).__name__}: {exc}; later failures are not shown"),
                  file=sys.stderr, flush=True)

    @staticmethod
    def _run_guarded(conn: sqlite3.Connection, op: _Op) -> tuple[_Op, Any, BaseException | None]:
        """One write in a savepoint, so its failure does not undo the rest of its batch."""
        conn.execute("SAVEPOINT op")
        try:
            value = op.fn(conn)
        except BaseException as exc:  # noqa: BLE001 - reported through the future
            conn.execute("ROLLBACK TO op")
            if op.on_error is None or not isinstance(exc, Exception):
                conn.execute("RELEASE op")
                return op, None, exc
            try:
                value = op.on_error(conn, exc)
            except BaseException as second:  # noqa: BLE001 - reported through the future
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                return op, None, second
        conn.execute("RELEASE op")
        return op, value, None

    def _fail(self, op: _Op, error: BaseException) -> None:
        if op.future is not None:
            op.future.set_exception(error)
        else:
            # Nobody waits for this write: keep count so a caller (and the tests) can see it.
            self.failed_writes += 1
            self.last_write_error = error

    # -- reading ---------------------------------------------------------------------------
    def reader(self) -> sqlite3.Connection:
        """This thread's own read connection."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = opening.connect(self.path, readonly=self.readonly)
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        """Run a read query on this thread's connection."""
        return self.reader().execute(sql, params).fetchall()

    def scalar(self, sql: str, params: Any = ()) -> Any:
        """The first column of the first row, or None."""
        row = self.reader().execute(sql, params).fetchone()
        return None if row is None else row[0]

    def iter_query(self, sql: str, params: Any = (), size: int = 1000) -> Iterator[sqlite3.Row]:
        """Stream a query's rows in chunks."""
        cursor = self.reader().execute(sql, params)
        while True:
            rows = cursor.fetchmany(size)
            if not rows:
                return
            yield from rows

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        value = self.scalar("SELECT value FROM meta WHERE key = ?", (key,))
        return default if value is None else str(value)

    def set_meta(self, key: str, value: str) -> None:
        self.write_sync(lambda c: c.execute(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value)))

    # -- closing ---------------------------------------------------------------------------
    def close(self) -> None:
        """Commit what is queued, stop the writer, close every connection."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None and self._write_conn is not None:
            with self._pending_changed:
                self._pending.append(_STOP)
                self._pending_changed.notify_all()
            self._writer.join()
            self._write_conn.close()
        mine = getattr(self._local, "conn", None)
        with self._readers_lock:
            for conn in self._readers:
                # Closing a connection another thread is reading from can crash sqlite:
                # stop its query instead; the connection closes when its thread ends.
                try:
                    if conn is mine:
                        conn.close()
                    else:
                        conn.interrupt()
                except sqlite3.Error:
                    pass
            self._readers.clear()
        self._local = threading.local()

    def release_reader(self) -> None:
        """Close this thread's read connection (a worker thread calls this before it ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            return
        self._local.conn = None
        with self._readers_lock:
            if conn in self._readers:
                self._readers.remove(conn)
        conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _enable_wal(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode = WAL")


@functools.cache
def _fresh_tables(migrations: Sequence[Migration]) -> frozenset[str]:
    """The tables and views `migrations` make (a dropped one is damage); cached per list."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        migrate(conn, Path(":memory:"), migrations)
        return frozenset(row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"))
    finally:
        conn.close()


def now() -> float:
    """Wall-clock seconds, as stored in every *_at column."""
    return time.time()
