"""Blind review: pairs sampled across judge scores, shown without score or gate verdict, decided.

The decisions measure the judge against a human (analysis/agreement.py); they also count
as ordinary review decisions, so a blind reject drops the pair like any other reject.
"""

from __future__ import annotations

import random
import sqlite3
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass

from visinstruct.core.errors import InputError
from visinstruct.core.records import Image
from visinstruct.core.review.samples import DECISIONS
from visinstruct.core.store.database import Store, now
from visinstruct.core.store.queries import load_images

BATCH = 20

# Current judged pairs nobody has decided on: a pair a reviewer already saw with its score
# (or edited, so the score is about other text) would not be a blind test.
_CANDIDATES = """
    SELECT pair_id, image_id, task, question, answer, score FROM pair_state
    WHERE score IS NOT NULL AND decision IS NULL AND NOT edited
      AND pair_id NOT IN (SELECT pair_id FROM reviews WHERE blind = 1)
"""


@dataclass(frozen=True)
class BlindPair:
    """What the blind reviewer sees: the pair and its image, never the score."""

    pair_id: int
    image: Image
    task: str
    question: str
    answer: str


def stratum(score: float) -> int:
    """The judge-score stratum of a pair: its score rounded down, within 1..10."""
    return min(10, max(1, int(score)))


def blind_sample(store: Store, count: int = BATCH, *, seed: int | None = None,
                 exclude: Collection[int] = ()) -> list[BlindPair]:
    """Up to `count` undecided judged pairs, drawn evenly across score strata, in random order.

    Each round takes one pair from every stratum that has one left, so rare scores (the
    low ones, usually) are reviewed as often as common ones. `exclude`: pair ids already
    shown (skipped ones), left out.
    """
    rng = random.Random(seed)
    by_stratum: dict[int, list[tuple[int, int, str, str, str]]] = defaultdict(list)
    for pair_id, image_id, task, question, answer, score in store.query(_CANDIDATES):
        if pair_id not in exclude:
            by_stratum[stratum(float(score))].append((pair_id, image_id, task, question, answer))
    pools = [by_stratum[key] for key in sorted(by_stratum)]
    for pool in pools:
        rng.shuffle(pool)
    chosen: list[tuple[int, int, str, str, str]] = []
    while len(chosen) < count and any(pools):
        for pool in pools:
            if pool and len(chosen) < count:
                chosen.append(pool.pop())
    # The order must not give the strata away.
    rng.shuffle(chosen)
    images = load_images(store, sorted({row[1] for row in chosen}))
    return [BlindPair(pair_id, images[image_id], task, question, answer)
            for pair_id, image_id, task, question, answer in chosen if image_id in images]


def record_blind_decision(store: Store, pair_id: int, decision: str) -> int:
    """Store a blind accept or reject of a pair; returns the review row's id."""
    if decision not in DECISIONS:
        raise InputError(f"review decision {decision!r} is not one of {', '.join(DECISIONS)}")

    def work(conn: sqlite3.Connection) -> int:
        if conn.execute("SELECT 1 FROM pairs WHERE id = ?", (pair_id,)).fetchone() is None:
            raise InputError(f"pair {pair_id} is not in {store.path}; start blind review again")
        cursor = conn.execute(
            "INSERT INTO reviews (pair_id, decision, created_at, blind) VALUES (?, ?, ?, 1)",
            (pair_id, decision, now()))
        return int(cursor.lastrowid or 0)

    review_id: int = store.write_sync(work)
    return review_id


def blind_decision_count(store: Store) -> int:
    """Pairs with a blind decision so far."""
    return int(store.scalar("SELECT COUNT(DISTINCT pair_id) FROM reviews WHERE blind = 1") or 0)
