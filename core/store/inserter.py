"""Insert rows in batches inside one write: indexing millions of source rows in bounded memory."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any

Progress = Callable[[str, int], None]
BATCH_ROWS = 2000


class BatchedInserter:
    """Rows for one or more INSERT statements, flushed every `size` rows of the first.

    The first statement's rows are the counted unit (an image, a fact); the others hold rows
    that belong to them (captions, boxes), so a unit and its parts always flush together.
    """

    def __init__(self, conn: sqlite3.Connection, label: str, statements: Sequence[str], *,
                 progress: Progress | None = None, size: int = BATCH_ROWS) -> None:
        self.conn = conn
        self.label = label
        self.statements = tuple(statements)
        self.progress = progress
        self.size = size
        self.written = 0
        self._rows: tuple[list[Sequence[Any]], ...] = tuple([] for _ in self.statements)

    def add(self, row: Sequence[Any], *parts: Iterable[Sequence[Any]]) -> None:
        """Queue one unit's row for the first statement and its parts' rows for the others."""
        self._rows[0].append(row)
        for rows, more in zip(self._rows[1:], parts, strict=True):
            rows.extend(more)
        if len(self._rows[0]) >= self.size:
            self.flush()

    def flush(self) -> int:
        """Write what is queued; returns how many units that was (and reports them)."""
        units = len(self._rows[0])
        for statement, rows in zip(self.statements, self._rows, strict=True):
            if rows:
                self.conn.executemany(statement, rows)
                rows.clear()
        if units and self.progress:
            self.progress(self.label, units)
        self.written += units
        return units

    def __enter__(self) -> BatchedInserter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if kind is None:  # a failed write rolls back anyway: nothing to flush
            self.flush()
