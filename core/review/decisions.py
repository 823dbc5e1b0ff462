"""Taking a review decision back: clear a pair's accept/reject, or undo one review row."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from visinstruct.core.store.database import Store


@dataclass(frozen=True)
class ReviewRow:
    """A stored review row, kept so that undoing its removal can put it back as it was."""

    review_id: int
    pair_id: int
    decision: str
    question: str | None
    answer: str | None
    created_at: float


def clear_decision(store: Store, pair_id: int) -> tuple[ReviewRow, ...]:
    """Forget every accept/reject of a pair (the judge's score decides again); returns them."""
    def work(conn: sqlite3.Connection) -> tuple[ReviewRow, ...]:
        rows = tuple(ReviewRow(*r) for r in conn.execute(
            "SELECT id, pair_id, decision, question, answer, created_at FROM reviews "
            "WHERE pair_id = ? AND decision IN ('accept', 'reject') ORDER BY id", (pair_id,)))
        conn.execute("DELETE FROM reviews WHERE pair_id = ? AND decision IN ('accept', 'reject')",
                     (pair_id,))
        return rows

    cleared: tuple[ReviewRow, ...] = store.write_sync(work)
    return cleared


def undo_review(store: Store, review_id: int) -> None:
    """Remove one review row (a decision or an edit just made); the one before it counts again."""
    store.write_sync(lambda conn: conn.execute("DELETE FROM reviews WHERE id = ?", (review_id,)))


def restore_reviews(store: Store, rows: tuple[ReviewRow, ...]) -> None:
    """Put cleared review rows back with their own ids, so their order is as before."""
    def work(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT OR IGNORE INTO reviews (id, pair_id, decision, question, answer, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(r.review_id, r.pair_id, r.decision, r.question, r.answer, r.created_at)
             for r in rows])

    store.write_sync(work)
