"""What the store keeps about pictures: each call's count of pictures sent, and the unusable files.

Migration 14 adds both; migration 18 sums the counts in the call tally. A call's `pictures`
says whether its model saw the image (analyze, review and the monitor read it);
`picture_problems` names each image whose picture could not be sent, per run, so `status`
can say which file to fix.
"""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the schema imports this module, and the store imports the schema
    from visinstruct.core.store.database import Store

PICTURES_SCHEMA = """
ALTER TABLE llm_calls ADD COLUMN pictures INTEGER NOT NULL DEFAULT 0;
CREATE TABLE picture_problems (
    run_id INTEGER NOT NULL,
    image_id INTEGER NOT NULL,
    path TEXT NOT NULL,
    problem TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, image_id)
);
"""


def record_problem(conn: sqlite3.Connection, run_id: int | None, image_id: int, path: str,
                   problem: str) -> None:
    """Note (once per run and image) that an image's picture could not be sent."""
    conn.execute("INSERT OR IGNORE INTO picture_problems (run_id, image_id, path, problem, "
                 "created_at) VALUES (?, ?, ?, ?, ?)",
                 (run_id or 0, image_id, path, problem, time.time()))


def last_run_problems(store: Store, limit: int = 5) -> dict[str, Any]:
    """The last run's unusable pictures: how many, and the first few files with their problem."""
    run = store.scalar("SELECT MAX(id) FROM runs")
    if run is None:
        return {"count": 0, "files": []}
    count = int(store.scalar("SELECT COUNT(*) FROM picture_problems WHERE run_id = ?",
                             (run,)) or 0)
    files = [f"{path}: {problem}" for path, problem in store.query(
        "SELECT path, problem FROM picture_problems WHERE run_id = ? ORDER BY image_id LIMIT ?",
        (run, limit))]
    return {"count": count, "files": files}


def pictures_sent(store: Store, run_id: int | None = None) -> int:
    """Pictures sent in answered calls (of one run, or of the whole store).

    Read from the call tally (migration 18 sums each call's pictures in it): a few rows
    whatever the ledger's size, so the monitor can ask on every poll.
    """
    where = " AND run_id = ?" if run_id is not None else ""
    return int(store.scalar(f"SELECT COALESCE(SUM(pictures), 0) FROM call_tally "
                            f"WHERE status = 'ok'{where}",
                            (run_id,) if run_id is not None else ()) or 0)


# Generations whose model saw the picture, and generations a judge scored seeing it: the
# saw-picture split of analyze and review reads these (one rule, here).
GENERATOR_SAW_SQL = ("SELECT g.id FROM generations g JOIN llm_calls c ON c.id = g.call_id "
                     "WHERE c.pictures > 0")
JUDGE_SAW_SQL = ("SELECT DISTINCT j.generation_id FROM judgements j "
                 "JOIN llm_calls c ON c.id = j.call_id WHERE c.pictures > 0")


def saw_picture(store: Store) -> tuple[frozenset[int], frozenset[int]]:
    """(generations whose generator saw the picture, generations a seeing judge scored)."""
    return (frozenset(r[0] for r in store.query(GENERATOR_SAW_SQL)),
            frozenset(r[0] for r in store.query(JUDGE_SAW_SQL)))


def generation_saw(store: Store, generation_id: int) -> tuple[bool, bool]:
    """(whether the generator of `generation_id` saw the picture, whether a judge of it did)."""
    generator = store.scalar(f"{GENERATOR_SAW_SQL} AND g.id = ? LIMIT 1", (generation_id,))
    judge = store.scalar(f"{JUDGE_SAW_SQL} AND j.generation_id = ? LIMIT 1", (generation_id,))
    return generator is not None, judge is not None
