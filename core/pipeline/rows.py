"""A queued generation's row reference, which also learns its pairs' ids when the insert runs."""

from __future__ import annotations

import sqlite3

from visinstruct.core.store.database import RowRef


class GenerationRef(RowRef):
    """A generation whose insert is queued: `id`, and `pair_ids` (position -> pair id), are set
    by the writer, so the judge's write that follows needs no query to find its pairs."""

    __slots__ = ("pair_ids",)

    def __init__(self, row_id: int | None = None) -> None:
        super().__init__(row_id)
        self.pair_ids: dict[int, int] | None = None


def pair_ids(conn: sqlite3.Connection, ref: RowRef | int) -> dict[int, int]:
    """Position -> id of the stored pairs of a generation (inside a write)."""
    known = getattr(ref, "pair_ids", None)
    if known is not None:
        return known
    row_id = ref.id if isinstance(ref, RowRef) else ref
    return dict(conn.execute("SELECT idx, id FROM pairs WHERE generation_id = ?", (row_id,)))


_ROWS_PER_INSERT = 200  # 4 parameters a row, far below SQLite's limit on parameters


def insert_pairs(conn: sqlite3.Connection, generation_id: int,
                 rows: list[tuple[str, str]]) -> dict[int, int]:
    """Insert a generation's (question, answer) rows in order; returns position -> pair id.

    One statement for many rows: the writer is the run's narrowest stage, and every
    statement costs it a trip through the interpreter lock.
    """
    ids: dict[int, int] = {}
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[start:start + _ROWS_PER_INSERT]
        values = ", ".join(["(?, ?, ?, ?)"] * len(chunk))
        params = [item for idx, (question, answer) in enumerate(chunk, start)
                  for item in (generation_id, idx, question, answer)]
        ids.update((idx, row_id) for row_id, idx in conn.execute(
            f"INSERT INTO pairs (generation_id, idx, question, answer) VALUES {values} "
            "RETURNING id, idx", params).fetchall())
    return ids
