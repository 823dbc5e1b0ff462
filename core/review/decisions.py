"""Human review decisions: accept, reject and edit a pair, clear a decision, undo one review row."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from visinstruct.core.errors import InputError
from visinstruct.core.store.database import Store, now

DECISIONS: tuple[str, ...] = ("accept", "reject")


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


# -- writes ------------------------------------------------------------------------------------
def _insert_review(store: Store, pair_id: int, decision: str, question: str | None = None,
                   answer: str | None = None) -> int:
    def work(conn: sqlite3.Connection) -> int:
        if conn.execute("SELECT 1 FROM pairs WHERE id = ?", (pair_id,)).fetchone() is None:
            raise InputError(f"pair {pair_id} is not in {store.path}; refresh the review list")
        cursor = conn.execute(
            "INSERT INTO reviews (pair_id, decision, question, answer, created_at) "
            "VALUES (?, ?, ?, ?, ?)", (pair_id, decision, question, answer, now()))
        return int(cursor.lastrowid or 0)

    review_id: int = store.write_sync(work)
    return review_id


def decide_pair(store: Store, pair_id: int, decision: str) -> int:
    """Record a human accept or reject of a pair; the latest decision wins over the judge."""
    if decision not in DECISIONS:
        raise InputError(f"review decision {decision!r} is not one of {', '.join(DECISIONS)}")
    return _insert_review(store, pair_id, decision)


def accept_pair(store: Store, pair_id: int) -> int:
    """Keep a pair whatever its score."""
    return decide_pair(store, pair_id, "accept")


def reject_pair(store: Store, pair_id: int) -> int:
    """Drop a pair whatever its score."""
    return decide_pair(store, pair_id, "reject")


def edit_pair(store: Store, pair_id: int, question: str, answer: str) -> int:
    """Store a human edit of a pair's text; the generated original stays in `pairs`."""
    question, answer = question.strip(), answer.strip()
    if not question or not answer:
        raise InputError("an edited pair needs both a question and an answer; "
                         "fill in the empty one")
    return _insert_review(store, pair_id, "edit", question, answer)
