"""The SQLite store: opening and migrating, one writer thread with batched commits, read connections."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from visinstruct.core.errors import StoreError
from visinstruct.core.store.schema import APPLICATION, LATEST_VERSION, MIGRATIONS

WriteFn = Callable[[sqlite3.Connection], Any]
_STOP = object()
_QUEUE_LIMIT = 4_000  # writes waiting for the writer; producers block past this (bounded RSS)


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


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(str(path), timeout=60, check_same_thread=False,
                               isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the store: {exc}") from exc
    conn.execute("PRAGMA busy_timeout = 60000")
    conn.execute("PRAGMA foreign_keys = ON")
    if not readonly:
        conn.execute("PRAGMA synchronous = NORMAL")
    return conn


@dataclass
class _Op:
    fn: WriteFn
    future: Future[Any] | None
    on_commit: Callable[[Any], None] | None


class Store:
    """One SQLite file; writes go through `write()` to a single writer thread."""

    def __init__(self, path: Path | str, *, batch_size: int = 500) -> None:
        self.path = Path(path)
        self._batch_size = batch_size
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self.failed_writes = 0
        self.last_write_error: BaseException | None = None
        self._pending: list[Any] = []
        self._pending_changed = threading.Condition()
        self._closed = False
        self._write_conn = self._open_and_migrate()
        self._writer = threading.Thread(target=self._writer_loop, name="store-writer",
                                        daemon=True)
        self._writer.start()

    # -- opening ---------------------------------------------------------------------------
    def _open_and_migrate(self) -> sqlite3.Connection:
        if self.path.exists() and self.path.is_dir():
            raise StoreError(f"{self.path}: is a directory, not a store file; pass a file path to --db")
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open("rb") as handle:
                if handle.read(16) != b"SQLite format 3\x00":
                    raise StoreError(f"{self.path}: not a SQLite file, so not a visinstruct store")
        parent = self.path.parent
        if not parent.exists():
            try:
                parent.mkdir(parents=True)
            except OSError as exc:
                raise StoreError(f"{self.path}: cannot create its folder: {exc.strerror}") from exc
        conn = _connect(self.path)
        try:
            version = self._schema_version(conn)
            # WAL only once the file is known to be ours: the pragma rewrites the file header.
            conn.execute("PRAGMA journal_mode = WAL")
            self._migrate(conn, version)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{self.path}: cannot use the store: {exc}") from exc
        except StoreError:
            conn.close()
            raise
        return conn

    def _schema_version(self, conn: sqlite3.Connection) -> int:
        """The applied schema version (0 for an empty file); refuses files that are not ours."""
        tables = {row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "meta" not in tables:
            shown = ", ".join(sorted(tables)[:5])
            raise StoreError(
                f"{self.path}: not a visinstruct store (it holds other tables: {shown}); "
                "use another --db path"
            )
        if "meta" in tables:
            meta = dict(conn.execute("SELECT key, value FROM meta"))
            if meta.get("application") != APPLICATION:
                raise StoreError(
                    f"{self.path}: belongs to another application "
                    f"({meta.get('application', 'unknown')!r}); use another --db path"
                )
            try:
                version = int(meta.get("schema_version", "0"))
            except ValueError:
                raise StoreError(
                    f"{self.path}: its schema_version {meta['schema_version']!r} is not a number; "
                    "the store is damaged, use another --db path"
                ) from None
            if version > LATEST_VERSION:
                raise StoreError(
                    f"{self.path}: written by a newer visinstruct (schema {version}; this "
                    f"version knows up to {LATEST_VERSION}); upgrade visinstruct to open it"
                )
            return version
        return 0

    def _migrate(self, conn: sqlite3.Connection, version: int) -> None:
        for number, _title, sql in MIGRATIONS:
            if number <= version:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                if number == 1:
                    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
                    conn.execute("INSERT INTO meta VALUES ('application', ?)", (APPLICATION,))
                for statement in _split_sql(sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(number),))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    # -- writing ---------------------------------------------------------------------------
    def write(self, fn: WriteFn, on_commit: Callable[[Any], None] | None = None) -> Future[Any]:
        """Queue `fn(conn)` for the writer; the future resolves after its batch commits."""
        future: Future[Any] = Future()
        self._put(_Op(fn, future, on_commit))
        return future

    def write_nowait(self, fn: WriteFn, on_commit: Callable[[Any], None] | None = None) -> None:
        """Queue `fn(conn)` when nobody will wait for it (a failure is reported to on_commit
        callers only through the store's error log, so use it for bookkeeping rows)."""
        self._put(_Op(fn, None, on_commit))

    def _put(self, op: "_Op") -> None:
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
        self.write(lambda conn: None).result()

    def _writer_loop(self) -> None:
        conn = self._write_conn
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
            if stop_after:
                break

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
                except Exception:  # noqa: BLE001 - a listener must not stop the writer
                    pass
            if op.future is not None:
                op.future.set_result(value)

    @staticmethod
    def _run_guarded(conn: sqlite3.Connection, op: _Op) -> tuple[_Op, Any, BaseException | None]:
        """One write in a savepoint, so its failure does not undo the rest of its batch."""
        conn.execute("SAVEPOINT op")
        try:
            value = op.fn(conn)
        except BaseException as exc:  # noqa: BLE001 - reported through the future
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            return op, None, exc
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
            conn = _connect(self.path, readonly=True)
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

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _split_sql(script: str) -> list[str]:
    """The statements of a migration; a trigger's body (with its own semicolons) stays whole."""
    statements = []
    pending = ""
    for chunk in script.split(";"):
        lines = [line.split("--", 1)[0] for line in chunk.splitlines()]
        text = "\n".join(lines).strip()
        if not text and not pending:
            continue
        pending = f"{pending};\n{text}" if pending else text
        if sqlite3.complete_statement(pending + ";"):
            statements.append(pending)
            pending = ""
    if pending:
        statements.append(pending)
    return statements


def now() -> float:
    """Wall-clock seconds, as stored in every *_at column."""
    return time.time()
