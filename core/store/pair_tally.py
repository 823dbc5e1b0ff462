"""A running count of the current pairs by the facts their verdict rests on (migration 13).

The verdict rules (`store/verdicts.py`) read four facts of a pair: the judge's latest score,
the latest human accept or reject, whether a gate dropped it, and whether it is a
short-answer record. `pair_tally` counts the current run pairs (those of each image and
task's newest good run generation) by those four facts, so the monitor applies the same
rules to a few dozen rows instead of reading every pair: its first read of a 900K-pair
store costs what a later one does.

The writer keeps the tally with triggers. Each event that can change a pair's facts takes
the pair away from the row of its facts before the change and adds it to the row of its
facts after: a new pair, a new generation (its predecessor's pairs stop being current), a
judgement, a review decision made or undone, a gate drop added or removed. Pairs,
generations and judgements are never updated or deleted by the tool; reviews and gate rows
are inserted and deleted, never updated. Sentinels stand for "none" because a primary key
with NULLs would never conflict: score -1 (judge scores are 1 to 10), decision ''.
"""

from __future__ import annotations

from visinstruct.core.store.verdicts import PairColumns

# How the verdict rules read a tally row.
TALLY_COLUMNS = PairColumns(
    score="NULLIF(score, -1)",
    decision="NULLIF(decision, '')",
    gated="gated",
    task="(CASE WHEN short THEN 'short_answer' ELSE '' END)",
)

_GOOD_RUN = "g.purpose = 'run' AND g.status = 'ok'"
_NEWEST = ("g.id = (SELECT MAX(g2.id) FROM generations g2 WHERE g2.image_id = g.image_id "
           "AND g2.task = g.task AND g2.status = 'ok' AND g2.purpose = 'run')")


def _score(pair: str, but: str = "") -> str:
    """The pair's latest judgement's score (-1: none, or no readable score)."""
    return (f"COALESCE((SELECT COALESCE(j.score, -1) FROM judgements j WHERE j.pair_id = {pair}"
            f"{but} ORDER BY j.id DESC LIMIT 1), -1)")


def _decision(pair: str, rows: str = "reviews") -> str:
    """The pair's latest accept or reject ('' for none) among `rows` (a table or subquery)."""
    return (f"COALESCE((SELECT r.decision FROM {rows} r WHERE r.pair_id = {pair} "
            f"AND r.decision IN ('accept', 'reject') ORDER BY r.id DESC LIMIT 1), '')")


def _gated(pair: str, but: str = "") -> str:
    return (f"EXISTS (SELECT 1 FROM pair_gates x WHERE x.pair_id = {pair} "
            f"AND x.action = 'drop'{but})")


def _facts(pair: str, *, score: str | None = None, decision: str | None = None,
           gated: str | None = None, current: str = _NEWEST) -> str:
    """SELECT of one row (score, decision, gated, short) for `pair` while it is current."""
    return (f"SELECT {score or _score(pair)}, {decision or _decision(pair)}, "
            f"{gated or _gated(pair)}, g.task = 'short_answer' "
            f"FROM pairs p JOIN generations g ON g.id = p.generation_id "
            f"WHERE p.id = {pair} AND {_GOOD_RUN} AND {current}")


def _leave(facts: str) -> str:
    return (f"UPDATE pair_tally SET n = n - 1 "
            f"WHERE (score, decision, gated, short) = ({facts});")


def _enter(facts: str) -> str:
    return (f"INSERT INTO pair_tally (score, decision, gated, short, n) "
            f"SELECT *, 1 FROM ({facts}) WHERE true "
            f"ON CONFLICT (score, decision, gated, short) DO UPDATE SET n = n + 1;")


def _move(before: str, after: str) -> str:
    return f"{_leave(before)}\n            {_enter(after)}"


_FIRST_DROP = "AND x.id <> NEW.id"
# The pair's reviews as they were before OLD was deleted.
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
        );
        INSERT INTO pair_tally
            SELECT COALESCE(score, -1), COALESCE(decision, ''), gate_rule IS NOT NULL,
                   task = 'short_answer', COUNT(*)
            FROM pair_state GROUP BY 1, 2, 3, 4;
        CREATE TRIGGER pair_tally_pair AFTER INSERT ON pairs BEGIN
            {_enter(_facts("NEW.id"))}
        END;
        -- A newer good run generation of an image and task: the older one's pairs go.
        CREATE TRIGGER pair_tally_generation AFTER INSERT ON generations
        WHEN NEW.status = 'ok' AND NEW.purpose = 'run' BEGIN
            UPDATE pair_tally SET n = n - old.c FROM (
                SELECT f.score, f.decision, f.gated, f.short, COUNT(*) AS c FROM (
                    SELECT {_score("p.id")} AS score, {_decision("p.id")} AS decision,
                           {_gated("p.id")} AS gated, g.task = 'short_answer' AS short
                    FROM generations g JOIN pairs p ON p.generation_id = g.id
                    WHERE g.id = (SELECT MAX(g2.id) FROM generations g2
                                  WHERE g2.image_id = NEW.image_id AND g2.task = NEW.task
                                    AND g2.status = 'ok' AND g2.purpose = 'run'
                                    AND g2.id < NEW.id)
                      AND NEW.id = (SELECT MAX(g3.id) FROM generations g3
                                    WHERE g3.image_id = NEW.image_id AND g3.task = NEW.task
                                      AND g3.status = 'ok' AND g3.purpose = 'run')) f
                GROUP BY 1, 2, 3, 4) old
            WHERE pair_tally.score = old.score AND pair_tally.decision = old.decision
              AND pair_tally.gated = old.gated AND pair_tally.short = old.short;
        END;
        CREATE TRIGGER pair_tally_judgement AFTER INSERT ON judgements BEGIN
            {_move(_facts("NEW.pair_id", score=_score("NEW.pair_id", " AND j.id <> NEW.id")),
                   _facts("NEW.pair_id"))}
        END;
        CREATE TRIGGER pair_tally_decision AFTER INSERT ON reviews
        WHEN NEW.decision IN ('accept', 'reject') BEGIN
            {_move(_facts("NEW.pair_id",
                          decision=_decision("NEW.pair_id",
                                             "(SELECT * FROM reviews WHERE id <> NEW.id)")),
                   _facts("NEW.pair_id"))}
        END;
        CREATE TRIGGER pair_tally_undo AFTER DELETE ON reviews
        WHEN OLD.decision IN ('accept', 'reject') BEGIN
            {_move(_facts("OLD.pair_id", decision=_decision("OLD.pair_id", _REVIEWS_WITH_OLD)),
                   _facts("OLD.pair_id"))}
        END;
        CREATE TRIGGER pair_tally_gate AFTER INSERT ON pair_gates
        WHEN NEW.action = 'drop' BEGIN
            {_move(_facts("NEW.pair_id", gated=_gated("NEW.pair_id", " " + _FIRST_DROP)),
                   _facts("NEW.pair_id"))}
        END;
        CREATE TRIGGER pair_tally_ungate AFTER DELETE ON pair_gates
        WHEN OLD.action = 'drop' BEGIN
            {_move(_facts("OLD.pair_id", gated="1"), _facts("OLD.pair_id"))}
        END;
        """
