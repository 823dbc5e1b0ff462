"""A count of the current pairs by the facts their verdict rests on (migration 13).

The verdict rules (`store/verdicts.py`) read four facts of a pair: the judge's latest score,
the latest human accept or reject, whether a gate dropped it, and whether it is a
short-answer record. `pair_tally` counts the current run pairs (those of each image and
task's newest good run generation) by those four facts, so the monitor applies the same
rules to a few dozen rows instead of reading every pair: its first read of a 900K-pair
store costs what a later one does.

The tally is exact up to three marks kept in `meta`: the last pair, generation and judgement
it has taken in. The hot writes (pairs, generations, judgements: thousands a second in a
run) pay nothing: the writer folds what came after the marks into the tally now and then
(`fold`, every few seconds and when the store closes), one set-based statement for
thousands of rows. A reader adds what is past the marks itself (`TALLIED`), so a count is
exact at any moment, whoever wrote last. The cold writes that change a pair's facts without
a new row past the marks (a review decision made or undone, a gate drop added or removed)
move the pair in the tally at once, by triggers.

Pairs, generations and judgements are never updated or deleted, and new rows get higher
ids; reviews and gate rows are inserted and deleted, never updated. Sentinels stand for
"none" because a primary key with NULLs would never conflict: score -1 (judge scores are 1
to 10), decision ''.
"""

from __future__ import annotations

import sqlite3

from visinstruct.core.store.verdicts import PairColumns

# How the verdict rules read a tally row.
TALLY_COLUMNS = PairColumns(
    score="NULLIF(score, -1)",
    decision="NULLIF(decision, '')",
    gated="gated",
    task="(CASE WHEN short THEN 'short_answer' ELSE '' END)",
)

_MARKS = ("pairs", "generations", "judgements")


def _mark(table: str) -> str:
    return (f"(SELECT CAST(value AS INTEGER) FROM meta "
            f"WHERE key = 'pair_tally_{table}')")


def _newest(upto: str) -> str:
    """SQL: generation g is its image and task's newest good run one among ids <= `upto`."""
    return (f"g.purpose = 'run' AND g.status = 'ok' AND g.id <= {upto} AND g.id = ("
            f"SELECT MAX(g2.id) FROM generations g2 WHERE g2.image_id = g.image_id "
            f"AND g2.task = g.task AND g2.status = 'ok' AND g2.purpose = 'run' "
            f"AND g2.id <= {upto})")


def _score(pair: str, upto: str, but: str = "") -> str:
    """The pair's latest judgement's score among ids <= `upto` (-1: none or unreadable)."""
    return (f"COALESCE((SELECT COALESCE(j.score, -1) FROM judgements j WHERE j.pair_id = {pair}"
            f" AND j.id <= {upto}{but} ORDER BY j.id DESC LIMIT 1), -1)")


def _decision(pair: str, rows: str = "reviews") -> str:
    """The pair's latest accept or reject ('' for none) among `rows` (a table or subquery).

    The aggregate form needs no sort (SQLite gives the bare column of the MAX row).
    """
    return (f"COALESCE((SELECT r.decision FROM (SELECT decision, MAX(id) FROM {rows} "
            f"WHERE pair_id = {pair} AND (decision = 'accept' OR decision = 'reject')) r), '')")


def _gated(pair: str, but: str = "") -> str:
    return (f"EXISTS (SELECT 1 FROM pair_gates x WHERE x.pair_id = {pair} "
            f"AND x.action = 'drop'{but})")


def _facts(pair: str, marks: tuple[str, str, str], *, score: str | None = None,
           decision: str | None = None, gated: str | None = None, source: str = "") -> str:
    """SELECT of the facts of pair `pair` (an SQL expression; `source` may add the table it
    comes from) as the tally holds them at `marks` (pairs, generations, judgements): a row
    while the pair is counted, none otherwise."""
    pairs, generations, judgements = marks
    return (f"SELECT {score or _score('p.id', judgements)} AS score, "
            f"{decision or _decision('p.id')} AS decision, {gated or _gated('p.id')} AS gated, "
            f"g.task = 'short_answer' AS short "
            f"FROM {source}pairs p JOIN generations g ON g.id = p.generation_id "
            f"WHERE p.id = {pair} AND p.id <= {pairs} AND {_newest(generations)}")


_STORED = (_mark("pairs"), _mark("generations"), _mark("judgements"))


def _move(before: str, after: str) -> str:
    """A trigger's statement: the pair leaves the tally row of `before` (its facts SELECT as
    they were) and enters that of `after` (as they are)."""
    return (f"INSERT INTO pair_tally (score, decision, gated, short, n) "
            f"SELECT score, decision, gated, short, SUM(d) FROM ("
            f"SELECT *, -1 AS d FROM ({before}) UNION ALL SELECT *, 1 AS d FROM ({after})) "
            f"GROUP BY 1, 2, 3, 4 "
            f"ON CONFLICT (score, decision, gated, short) DO UPDATE SET n = n + excluded.n;")


def _since(marks: tuple[str, str, str]) -> str:
    """SELECT (score, decision, gated, short, n) rows: what the writes past the stored marks
    change, up to `marks` (SQL expressions for the newest pair, generation and judgement)."""
    pairs, generations, judgements = marks
    old = _STORED
    # Every pair whose facts may differ between the stored marks and `marks`: judged since,
    # new since, or of an older generation of an image and task generated again since.
    touched = (
        f"SELECT pair_id AS id FROM judgements WHERE id > {old[2]} AND id <= {judgements} "
        f"UNION SELECT id FROM pairs WHERE id > {old[0]} AND id <= {pairs} "
        f"UNION SELECT p.id FROM generations n JOIN generations o ON o.image_id = n.image_id "
        f"AND o.task = n.task AND o.status = 'ok' AND o.purpose = 'run' AND o.id < n.id "
        f"JOIN pairs p ON p.generation_id = o.id "
        f"WHERE n.id > {old[1]} AND n.id <= {generations} "
        f"AND n.status = 'ok' AND n.purpose = 'run'")
    return (f"SELECT score, decision, gated, short, SUM(d) AS n FROM ("
            f"SELECT *, -1 AS d FROM ({_facts('t.id', old, source=f'({touched}) t, ')}) "
            f"UNION ALL "
            f"SELECT *, 1 AS d FROM ({_facts('t.id', marks, source=f'({touched}) t, ')})) "
            f"GROUP BY 1, 2, 3, 4")


def _newest_id(table: str) -> str:
    return f"(SELECT COALESCE(MAX(id), 0) FROM {table})"


_NEWEST_IDS = (_newest_id("pairs"), _newest_id("generations"), _newest_id("judgements"))

# The exact current counts, for a reader: the tally plus what was written past its marks.
TALLIED = (f"(SELECT score, decision, gated, short, SUM(n) AS n FROM ("
           f"SELECT score, decision, gated, short, n FROM pair_tally "
           f"UNION ALL {_since(_NEWEST_IDS)}) GROUP BY 1, 2, 3, 4)")

FOLD_SECONDS = 5.0  # how often a writing store folds new rows into the tally


def fold(conn: sqlite3.Connection) -> None:
    """Take every row written past the marks into the tally and move the marks (the writer,
    inside its transaction)."""
    newest = conn.execute(f"SELECT {', '.join(_NEWEST_IDS)}").fetchone()
    if newest == conn.execute(f"SELECT {', '.join(_STORED)}").fetchone():
        return
    marks = (":pairs", ":generations", ":judgements")
    values = dict(zip(_MARKS, newest, strict=True))
    conn.execute(f"INSERT INTO pair_tally (score, decision, gated, short, n) "
                 f"SELECT * FROM ({_since(marks)}) WHERE n != 0 "
                 f"ON CONFLICT (score, decision, gated, short) DO UPDATE SET n = n + excluded.n",
                 values)
    conn.executemany("UPDATE meta SET value = ? WHERE key = ?",
                     ((str(values[table]), f"pair_tally_{table}") for table in _MARKS))


def has_tally(conn: sqlite3.Connection) -> bool:
    return bool(conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                             "AND name = 'pair_tally'").fetchone())


# The reviews of the pair as they were before OLD was deleted.
_REVIEWS_WITH_OLD = ("(SELECT id, pair_id, decision FROM reviews "
                     "UNION ALL SELECT OLD.id, OLD.pair_id, OLD.decision)")

# Migration 13.
PAIR_TALLY = f"""
        CREATE TABLE pair_tally (
            score REAL NOT NULL,        -- the latest judgement's score; -1: none
            decision TEXT NOT NULL,     -- the latest accept | reject; '': none
            gated INTEGER NOT NULL,     -- 1: a gate dropped the pair
            short INTEGER NOT NULL,     -- 1: a short-answer record
            n INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (score, decision, gated, short)
        ) WITHOUT ROWID;
        INSERT INTO pair_tally
            SELECT COALESCE(score, -1), COALESCE(decision, ''), gate_rule IS NOT NULL,
                   task = 'short_answer', COUNT(*)
            FROM pair_state GROUP BY 1, 2, 3, 4;
        INSERT OR REPLACE INTO meta SELECT 'pair_tally_pairs', COALESCE(MAX(id), 0) FROM pairs;
        INSERT OR REPLACE INTO meta
            SELECT 'pair_tally_generations', COALESCE(MAX(id), 0) FROM generations;
        INSERT OR REPLACE INTO meta
            SELECT 'pair_tally_judgements', COALESCE(MAX(id), 0) FROM judgements;
        CREATE TRIGGER pair_tally_decision AFTER INSERT ON reviews
        WHEN NEW.decision IN ('accept', 'reject') BEGIN
            {_move(_facts("NEW.pair_id", _STORED, decision=_decision(
                       "NEW.pair_id", "(SELECT * FROM reviews WHERE id <> NEW.id)")),
                   _facts("NEW.pair_id", _STORED))}
        END;
        CREATE TRIGGER pair_tally_undo AFTER DELETE ON reviews
        WHEN OLD.decision IN ('accept', 'reject') BEGIN
            {_move(_facts("OLD.pair_id", _STORED,
                          decision=_decision("OLD.pair_id", _REVIEWS_WITH_OLD)),
                   _facts("OLD.pair_id", _STORED))}
        END;
        CREATE TRIGGER pair_tally_gate AFTER INSERT ON pair_gates
        WHEN NEW.action = 'drop' BEGIN
            {_move(_facts("NEW.pair_id", _STORED,
                          gated=_gated("NEW.pair_id", " AND x.id <> NEW.id")),
                   _facts("NEW.pair_id", _STORED))}
        END;
        CREATE TRIGGER pair_tally_ungate AFTER DELETE ON pair_gates
        WHEN OLD.action = 'drop' BEGIN
            {_move(_facts("OLD.pair_id", _STORED, gated="1"), _facts("OLD.pair_id", _STORED))}
        END;
        """
