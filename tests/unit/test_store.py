"""The SQLite store: WAL, one writer under many threads, savepoints, migrations, refusals."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from visinstruct.core.errors import ExitCode, StoreError
from visinstruct.core.store import database as store_module
from visinstruct.core.store.database import Store
from visinstruct.core.store.schema import LATEST_VERSION, MIGRATIONS

WRITER_THREADS = 8
WRITES_PER_THREAD = 500
READER_THREADS = 3


def make_table(store: Store) -> None:
    store.write_sync(lambda c: c.execute(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, thread INTEGER, n INTEGER, "
        "UNIQUE (thread, n))"))


def test_pragmas_wal_and_foreign_keys(tmp_store: Store) -> None:
    assert tmp_store.scalar("PRAGMA journal_mode") == "wal"
    assert tmp_store.scalar("PRAGMA foreign_keys") == 1
    assert tmp_store.get_meta("application") == "visinstruct"
    assert tmp_store.get_meta("schema_version") == str(LATEST_VERSION)


def test_many_writer_threads_and_readers_at_once(tmp_store: Store) -> None:
    make_table(tmp_store)
    start = threading.Barrier(WRITER_THREADS + READER_THREADS)
    writers_done = threading.Event()
    errors: list[BaseException] = []
    reads: list[int] = []

    def writer(thread: int) -> None:
        try:
            start.wait()
            futures = [
                tmp_store.write(lambda c, n=n: c.execute(
                    "INSERT INTO items (thread, n) VALUES (?, ?)", (thread, n)).lastrowid)
                for n in range(WRITES_PER_THREAD)
            ]
            for future in futures:
                assert isinstance(future.result(), int)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    def reader() -> None:
        try:
            start.wait()
            last = 0
            # Read until the writers finish, and at least once afterwards.
            while True:
                finished = writers_done.is_set()
                count = tmp_store.scalar("SELECT COUNT(*) FROM items")
                assert count >= last  # committed rows never disappear
                last = count
                tmp_store.query("SELECT thread, MAX(n) FROM items GROUP BY thread")
                if finished:
                    break
            reads.append(last)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(t,)) for t in range(WRITER_THREADS)]
    readers = [threading.Thread(target=reader) for _ in range(READER_THREADS)]
    for thread in writers + readers:
        thread.start()
    for thread in writers:
        thread.join()
    writers_done.set()
    for thread in readers:
        thread.join()
    assert errors == []
    total = WRITER_THREADS * WRITES_PER_THREAD
    assert reads == [total] * READER_THREADS
    assert tmp_store.scalar("SELECT COUNT(DISTINCT thread || ':' || n) FROM items") == total


def test_a_failing_write_does_not_undo_its_batch(tmp_store: Store) -> None:
    make_table(tmp_store)
    started, release = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        started.set()
        assert release.wait(10)

    def failing(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO items (thread, n) VALUES (1, 2)")
        raise ValueError("this write fails after inserting")

    blocker = tmp_store.write(hold)
    assert started.wait(10)
    # Queued while the writer is busy, so the three land in one batch.
    first = tmp_store.write(
        lambda c: c.execute("INSERT INTO items (thread, n) VALUES (1, 1)").lastrowid)
    broken = tmp_store.write(failing)
    third = tmp_store.write(
        lambda c: c.execute("INSERT INTO items (thread, n) VALUES (1, 3)").lastrowid)
    release.set()
    blocker.result(10)
    assert isinstance(first.result(10), int)
    with pytest.raises(ValueError, match="fails after inserting"):
        broken.result(10)
    assert isinstance(third.result(10), int)
    assert [r[0] for r in tmp_store.query("SELECT n FROM items ORDER BY n")] == [1, 3]


def test_a_constraint_error_is_reported_and_the_store_goes_on(tmp_store: Store) -> None:
    make_table(tmp_store)
    tmp_store.write_sync(lambda c: c.execute("INSERT INTO items (thread, n) VALUES (0, 0)"))
    with pytest.raises(sqlite3.IntegrityError):
        tmp_store.write_sync(lambda c: c.execute("INSERT INTO items (thread, n) VALUES (0, 0)"))
    tmp_store.write_sync(lambda c: c.execute("INSERT INTO items (thread, n) VALUES (0, 1)"))
    assert tmp_store.scalar("SELECT COUNT(*) FROM items") == 2


def test_write_sync_returns_the_value(tmp_store: Store) -> None:
    make_table(tmp_store)
    row_id = tmp_store.write_sync(
        lambda c: c.execute("INSERT INTO items (thread, n) VALUES (7, 7)").lastrowid)
    assert tmp_store.scalar("SELECT thread FROM items WHERE id = ?", (row_id,)) == 7
    assert tmp_store.write_sync(lambda c: {"answer": 42}) == {"answer": 42}


def test_on_commit_sees_the_committed_row(tmp_store: Store) -> None:
    make_table(tmp_store)
    seen: list[int] = []
    done = threading.Event()

    def on_commit(row_id: int) -> None:
        # A reader on another connection already sees it: the callback runs after COMMIT.
        reader = sqlite3.connect(tmp_store.path)
        seen.append(
            reader.execute("SELECT COUNT(*) FROM items WHERE id = ?", (row_id,)).fetchone()[0])
        reader.close()
        done.set()

    tmp_store.write(lambda c: c.execute("INSERT INTO items (thread, n) VALUES (1, 1)").lastrowid,
                    on_commit=on_commit).result(10)
    assert done.wait(10)
    assert seen == [1]


def test_close_commits_queued_writes(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = Store(path)
    make_table(store)
    futures = [store.write(
                   lambda c, n=n: c.execute("INSERT INTO items (thread, n) VALUES (0, ?)", (n,)))
               for n in range(1200)]
    store.close()
    assert all(f.done() and f.exception() is None for f in futures)
    with Store(path) as reopened:
        assert reopened.scalar("SELECT COUNT(*) FROM items") == 1200


def test_write_after_close_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    store.close()
    store.close()  # a second close is harmless
    with pytest.raises(StoreError, match="closed"):
        store.write_sync(lambda c: None)


def test_reopening_keeps_data_and_runs_no_migration_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.db"
    with Store(path) as store:
        make_table(store)
        store.write_sync(lambda c: c.execute("INSERT INTO items (thread, n) VALUES (1, 1)"))
    # A newer release adds migration N+1; CREATE TABLE would fail if it ever ran twice.
    added = (LATEST_VERSION + 1, "test table", "CREATE TABLE added_later (x INTEGER)")
    monkeypatch.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, added))
    for _ in range(2):
        with Store(path) as store:
            assert store.get_meta("schema_version") == str(LATEST_VERSION + 1)
            assert store.scalar("SELECT COUNT(*) FROM added_later") == 0
            assert store.scalar("SELECT COUNT(*) FROM items") == 1


def test_a_failing_migration_leaves_the_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.db"
    Store(path).close()
    broken = (LATEST_VERSION + 1, "broken", "CREATE TABLE half (x INTEGER); THIS IS NOT SQL")
    monkeypatch.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, broken))
    with pytest.raises(StoreError):
        Store(path)
    monkeypatch.undo()
    with Store(path) as store:
        assert store.get_meta("schema_version") == str(LATEST_VERSION)
        assert store.scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'half'") == 0


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                     (str(LATEST_VERSION + 5),))
    with pytest.raises(StoreError) as caught:
        Store(path)
    message = str(caught.value)
    assert str(path) in message and "newer" in message
    assert caught.value.exit_code == ExitCode.BAD_INPUT


def test_a_damaged_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = 'two' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(StoreError, match="schema_version"):
        Store(path)


def test_another_applications_sqlite_file_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers (name) VALUES ('Ada')")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a visinstruct store"):
        Store(path)
    assert path.read_bytes() == before


def test_a_non_sqlite_file_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n")
    with pytest.raises(StoreError, match="not a SQLite file"):
        Store(path)
    assert path.read_text() == "these are my notes, not a database\n"


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="directory"):
        Store(tmp_path)


def test_a_missing_folder_is_created(tmp_path: Path) -> None:
    with Store(tmp_path / "a" / "b" / "store.db") as store:
        assert store.scalar("SELECT COUNT(*) FROM images") == 0


def test_a_migration_may_be_a_function_of_a_sqlite_utils_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def add_notes(db: Any) -> None:
        db.create_table("notes", {"id": int, "text": str}, pk="id")
        db["notes"].insert({"text": "first"})

    trigger = ("CREATE TABLE tally (n INTEGER); INSERT INTO tally VALUES (0);\n"
               "CREATE TRIGGER notes_counted AFTER INSERT ON notes BEGIN\n"
               "  UPDATE tally SET n = n + 1; END;")
    monkeypatch.setattr(store_module, "MIGRATIONS", (
        *MIGRATIONS, (LATEST_VERSION + 1, "notes", add_notes),
        (LATEST_VERSION + 2, "a trigger", trigger)))
    with Store(tmp_path / "store.db") as store:
        store.write_sync(lambda c: c.execute("INSERT INTO notes (text) VALUES ('second')"))
        assert store.scalar("SELECT COUNT(*) FROM notes") == 2
        assert store.scalar("SELECT n FROM tally") == 1
        assert store.get_meta("schema_version") == str(LATEST_VERSION + 2)


def test_a_migration_merged_later_with_a_lower_number_still_runs_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.db"
    later = (LATEST_VERSION + 2, "later", "CREATE TABLE later (x INTEGER)")
    monkeypatch.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, later))
    Store(path).close()
    # Another branch's migration, numbered below the one this store already has.
    gap = (LATEST_VERSION + 1, "gap", "CREATE TABLE gap (x INTEGER)")
    monkeypatch.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, gap, later))
    for _ in range(2):
        with Store(path) as store:
            assert store.scalar("SELECT COUNT(*) FROM gap") == 0
            assert store.get_meta("schema_version") == str(LATEST_VERSION + 2)


def test_a_migration_that_commits_by_itself_is_refused_and_undone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.db"
    Store(path).close()

    def commits(db: Any) -> None:
        db.conn.execute("CREATE TABLE early (x INTEGER)")
        db.conn.execute("COMMIT")

    monkeypatch.setattr(store_module, "MIGRATIONS",
                        (*MIGRATIONS, (LATEST_VERSION + 1, "commits", commits)))
    with pytest.raises(StoreError, match="committed its own transaction"):
        Store(path)
    monkeypatch.undo()
    with Store(path) as store:
        assert store.get_meta("schema_version") == str(LATEST_VERSION)


def test_kept_pairs_and_run_figures_views(tmp_store: Store) -> None:
    def seed(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO images (id, file_name, width, height) VALUES (1, 'a.jpg', 1, 1)")
        conn.execute("INSERT INTO generations (image_id, task, prompt_version, model, status, "
                     "created_at) VALUES (1, 'detail', 'v1', 'm', 'ok', 0)")
        conn.executemany(
            "INSERT INTO pairs (generation_id, idx, question, answer) VALUES (1, ?, ?, ?)",
            [(0, "What is shown?", "A zebra grazing."), (1, "Where?", "On a plain.")])
        conn.executemany("INSERT INTO judgements (pair_id, generation_id, score, prompt_version, "
                         "model, created_at) VALUES (?, 1, ?, 'j', 'm', 0)", [(1, 9), (2, 3)])
        conn.execute("INSERT INTO runs (started_at, status) VALUES (0, 'finished')")

    tmp_store.write_sync(seed)
    assert [r["answer"] for r in tmp_store.query("SELECT answer FROM kept_pairs")] == [
        "A zebra grazing."]
    assert tmp_store.scalar("SELECT COUNT(*) FROM run_figures") == 1


def test_pair_search_finds_new_pairs_and_takes_any_typed_text(tmp_store: Store) -> None:
    from visinstruct.core.store.search import search_pairs

    def seed(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO images (id, file_name, width, height) VALUES (1, 'a.jpg', 1, 1)")
        conn.execute("INSERT INTO generations (image_id, task, prompt_version, model, status, "
                     "created_at) VALUES (1, 'detail', 'v1', 'm', 'ok', 0)")

    def add(question: str, answer: str) -> int:
        return int(tmp_store.write_sync(lambda c: c.execute(
            "INSERT INTO pairs (generation_id, idx, question, answer) VALUES (1, 0, ?, ?)",
            (question, answer)).lastrowid))

    tmp_store.write_sync(seed)
    first = add("What animal is it?", "A zebra grazing near a fence.")
    assert search_pairs(tmp_store, "Zebra") == [first]
    second = add("Which way does it face?", "The giraffe looks left.")
    assert search_pairs(tmp_store, "giraffe") == [second]   # indexed on the next search
    assert search_pairs(tmp_store, "gira") == [second]      # the last word is a prefix
    assert search_pairs(tmp_store, 'zebra NOT "fence:') == []  # typed text is never syntax
    assert search_pairs(tmp_store, "  ?! ") == []
