"""The pair tally (migration 13) always equals the current pairs counted by their verdict facts.

A reader's count (the tally and what was written past its marks) must be exact after any
write; the table alone must be exact after the writer folds.

Random sequences of everything the writer does to pairs (new generations that supersede
older ones, pairs, judgements and re-judgements, review decisions made and undone, gate drops
and flags added and removed, prompt-lab generations) are applied to a store, and after each
one the tally kept by the triggers is compared with a count over the `pair_state` view.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from visinstruct.core.config import Config
from visinstruct.core.store.database import Store
from visinstruct.core.store.pair_tally import TALLIED, fold
from visinstruct.core.store.queries import verdict_counts
from visinstruct.core.store.schema import MIGRATIONS
from visinstruct.core.store.snapshots import current_scores

IMAGES = (1, 2)
TASKS = ("conversation", "short_answer")

_op = st.one_of(
    st.tuples(st.just("generation"), st.sampled_from(IMAGES), st.sampled_from(TASKS),
              st.sampled_from(("ok", "ok", "parse_failure")),
              st.sampled_from(("run", "run", "lab")), st.integers(0, 3)),
    st.tuples(st.just("judge"), st.integers(0, 30), st.sampled_from((None, 2.0, 6.5, 7.0, 9.0))),
    st.tuples(st.just("review"), st.integers(0, 30), st.sampled_from(("accept", "reject", "edit"))),
    st.tuples(st.just("undo"), st.integers(0, 30)),
    st.tuples(st.just("gate"), st.integers(0, 30), st.sampled_from(("drop", "flag"))),
    st.tuples(st.just("ungate"), st.integers(0, 30)),
)


def _pick(conn: sqlite3.Connection, table: str, index: int) -> int | None:
    ids = [row[0] for row in conn.execute(f"SELECT id FROM {table} ORDER BY id")]
    return ids[index % len(ids)] if ids else None


def _apply(conn: sqlite3.Connection, op: tuple) -> None:
    now = time.time()
    kind = op[0]
    if kind == "generation":
        _, image, task, status, purpose, pairs = op
        version = f"v{conn.execute('SELECT COUNT(*) FROM generations').fetchone()[0]}"
        cur = conn.execute(
            "INSERT INTO generations (image_id, task, prompt_version, model, status, raw, "
            "problems, purpose, created_at) VALUES (?, ?, ?, 'm', ?, '', '[]', ?, ?)",
            (image, task, version, status, purpose, now))
        for idx in range(pairs if status == "ok" else 0):
            conn.execute("INSERT INTO pairs (generation_id, idx, question, answer) "
                         "VALUES (?, ?, 'q', 'a')", (cur.lastrowid, idx))
        return
    if kind == "undo":
        review = _pick(conn, "reviews", op[1])
        if review is not None:
            conn.execute("DELETE FROM reviews WHERE id = ?", (review,))
        return
    if kind == "ungate":
        pair = _pick(conn, "pairs", op[1])
        if pair is not None:  # as gating.py does: every gate row of the pair at once
            conn.execute("DELETE FROM pair_gates WHERE pair_id = ?", (pair,))
        return
    pair = _pick(conn, "pairs", op[1])
    if pair is None:
        return
    if kind == "judge":
        conn.execute("INSERT INTO judgements (pair_id, generation_id, score, reason, "
                     "prompt_version, model, created_at) SELECT id, generation_id, ?, '', 'j', "
                     "'judge', ? FROM pairs WHERE id = ?", (op[2], now, pair))
    elif kind == "review":
        conn.execute("INSERT INTO reviews (pair_id, decision, created_at) VALUES (?, ?, ?)",
                     (pair, op[2], now))
    elif kind == "gate":
        conn.execute("INSERT INTO pair_gates (pair_id, rule, action) VALUES (?, 'r', ?)",
                     (pair, op[2]))


_BY_FACTS = ("SELECT COALESCE(score, -1), COALESCE(decision, ''), gate_rule IS NOT NULL, "
             "task = 'short_answer', COUNT(*) FROM pair_state GROUP BY 1, 2, 3, 4")


def _tally(conn: sqlite3.Connection) -> set[tuple]:
    """What a reader counts: the tally and the rows written past its marks."""
    return set(conn.execute(f"SELECT * FROM {TALLIED} WHERE n != 0"))


def _folded(conn: sqlite3.Connection) -> set[tuple]:
    """The tally table alone."""
    return set(conn.execute("SELECT score, decision, gated, short, n FROM pair_tally "
                            "WHERE n != 0"))


def _new_store(db: Path) -> sqlite3.Connection:
    Store(db).close()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executemany("INSERT INTO images (id, file_name, width, height) VALUES (?, 'x.jpg', 1, 1)",
                     ((i,) for i in IMAGES))
    return conn


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=st.lists(st.tuples(_op, st.booleans()), min_size=1, max_size=40))
def test_the_tally_follows_every_write(tmp_path_factory, ops) -> None:
    db = tmp_path_factory.mktemp("tally") / "s.db"
    conn = _new_store(db)
    for op, then_fold in ops:
        _apply(conn, op)
        assert _tally(conn) == set(conn.execute(_BY_FACTS)), op
        if then_fold:  # as the writer does now and then: the table alone is then exact
            fold(conn)
            assert _folded(conn) == set(conn.execute(_BY_FACTS)), op
    conn.close()
    store = Store(db)
    try:  # the monitor's figures (from the tally) are status's (from the pairs)
        counts = verdict_counts(store, 7.0)
        scores = current_scores(store, 7.0, 0)
        assert scores.kept == counts.kept
        assert scores.judged == counts.judged
        assert scores.buckets.get(0, 0) == counts.unjudged
    finally:
        store.close()


def test_a_store_made_before_the_tally_gets_it_filled(tmp_path: Path) -> None:
    """Migration 13 counts the pairs already there; the monitor reads the same either way."""
    db = tmp_path / "s.db"
    conn = _new_store(db)
    for op in [("generation", 1, "conversation", "ok", "run", 3), ("judge", 0, 8.0),
               ("judge", 1, 3.0), ("gate", 2, "drop"), ("review", 1, "accept"),
               ("generation", 1, "short_answer", "ok", "run", 2)]:
        _apply(conn, op)
    # Back to schema 12: no tally, no triggers, migration 13 not applied.
    for (trigger,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                   "AND name LIKE 'pair_tally%'").fetchall():
        conn.execute(f"DROP TRIGGER {trigger}")
    conn.execute("DROP TABLE pair_tally")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'applied_migrations'",
                 (",".join(str(n) for n, _, _ in MIGRATIONS if n != 13),))
    conn.execute("UPDATE meta SET value = '12' WHERE key = 'schema_version'")
    conn.close()
    store = Store(db)
    try:
        conn = sqlite3.connect(db)
        assert _tally(conn) == set(conn.execute(_BY_FACTS))
        conn.close()
        scores = current_scores(store, Config().judge.threshold, 0)
        # Scored 8; accepted though scored 3; the two short answers.
        assert scores.kept == 4
        assert dict(scores.buckets) == {8: 1, 3: 1}
    finally:
        store.close()
