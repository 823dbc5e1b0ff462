"""The one batched inserter indexing uses: units and their parts flush together, in batches."""

from __future__ import annotations

import sqlite3

import pytest

from visinstruct.core.store.inserter import BatchedInserter

STATEMENTS = ("INSERT INTO units (id) VALUES (?)", "INSERT INTO parts (unit, n) VALUES (?, ?)")


def database() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.executescript("CREATE TABLE units (id INTEGER); CREATE TABLE parts (unit, n);")
    return conn


def counts(conn: sqlite3.Connection) -> tuple[int, int]:
    units = conn.execute("SELECT COUNT(*) FROM units").fetchone()[0]
    return int(units), int(conn.execute("SELECT COUNT(*) FROM parts").fetchone()[0])


def test_units_flush_every_batch_with_their_parts_and_report_progress() -> None:
    conn = database()
    reported: list[tuple[str, int]] = []

    with BatchedInserter(conn, "units", STATEMENTS, progress=lambda *a: reported.append(a),
                         size=3) as inserter:
        for unit in range(7):
            inserter.add((unit,), [(unit, n) for n in range(2)])
            if unit == 2:
                assert counts(conn) == (3, 6)  # the third unit filled a batch

    assert counts(conn) == (7, 14)
    assert inserter.written == 7
    assert reported == [("units", 3), ("units", 3), ("units", 1)]


def test_nothing_queued_is_written_when_the_work_fails() -> None:
    conn = database()

    with pytest.raises(ValueError), BatchedInserter(conn, "units", STATEMENTS) as inserter:
        inserter.add((1,), [])
        raise ValueError("a bad source file")

    assert counts(conn) == (0, 0)
