"""What became of a pair: kept, dropped (by a human, a gate or the judge) or unjudged; written once.

Every door that counts or lists pairs (export, `status`, the `kept_pairs` and
`pair_verdicts` views, review and its filters, the lab, the monitor, `analyze`, judge
agreement) asks this module, so they cannot disagree. The rules, in the order they apply:
1. a human decision wins: accepted is kept (a gated pair too: that is how a human restores
   it), rejected is dropped by a human;
2. a pair a quality gate dropped is dropped by the gate (a score it got before the gates
   changed does not count);
3. a short-answer record is the dataset's own answer: no judge scores it, it is kept;
4. a pair with no readable score is unjudged;
5. otherwise the judge decides: kept at or above the threshold, else dropped by the judge.
Where a panel judged, the pair's score is the panel's combined score (its latest judgement).
A flag from a gate marks a pair but changes none of this.
"""

from __future__ import annotations

from dataclasses import dataclass

KEPT, DROPPED, UNJUDGED = "kept", "dropped", "unjudged"
VERDICTS = (KEPT, DROPPED, UNJUDGED)
BY_HUMAN, BY_GATE, BY_JUDGE = "human", "gate", "judge"

# The threshold the views count at: the last run's (meta judge_threshold), else 7.
STORED_THRESHOLD = ("COALESCE((SELECT CAST(value AS REAL) FROM meta "
                    "WHERE key = 'judge_threshold'), 7)")


@dataclass(frozen=True)
class PairColumns:
    """The SQL expressions that give one pair's facts in a query (default: `pair_state`'s)."""

    score: str = "score"
    decision: str = "decision"
    gated: str = "gate_rule IS NOT NULL"   # a gate dropped it
    task: str = "task"


PAIR_STATE = PairColumns()


def outcome_sql(threshold: str = "?", cols: PairColumns = PAIR_STATE) -> str:
    """SQL: the rules above, in their order: 'kept', 'unjudged', or who dropped the pair
    ('human', 'gate', 'judge'). `threshold` is an SQL expression (a parameter, a subquery)."""
    return (f"(CASE WHEN {cols.decision} = 'accept' THEN '{KEPT}' "
            f"WHEN {cols.decision} = 'reject' THEN '{BY_HUMAN}' "
            f"WHEN {cols.gated} THEN '{BY_GATE}' "
            f"WHEN {cols.task} = 'short_answer' THEN '{KEPT}' "
            f"WHEN {cols.score} IS NULL THEN '{UNJUDGED}' "
            f"WHEN {cols.score} >= {threshold} THEN '{KEPT}' ELSE '{BY_JUDGE}' END)")


def dropped_by_sql(threshold: str = "?", cols: PairColumns = PAIR_STATE) -> str:
    """SQL: who dropped the pair ('human', 'gate', 'judge'), or NULL when it was not dropped."""
    return f"NULLIF(NULLIF({outcome_sql(threshold, cols)}, '{KEPT}'), '{UNJUDGED}')"


def verdict_sql(threshold: str = "?", cols: PairColumns = PAIR_STATE) -> str:
    """SQL: the pair's verdict, 'kept', 'dropped' or 'unjudged'."""
    return (f"(CASE {outcome_sql(threshold, cols)} WHEN '{KEPT}' THEN '{KEPT}' "
            f"WHEN '{UNJUDGED}' THEN '{UNJUDGED}' ELSE '{DROPPED}' END)")


def judged_sql(cols: PairColumns = PAIR_STATE) -> str:
    """SQL: true when the judge's score stands for this pair (scored, and no gate dropped it)."""
    return (f"({cols.score} IS NOT NULL AND {cols.task} != 'short_answer' "
            f"AND (NOT ({cols.gated}) OR {cols.decision} = 'accept'))")


def kept_sql(threshold: str = "?", cols: PairColumns = PAIR_STATE) -> str:
    """SQL: true when the pair is kept."""
    return f"({verdict_sql(threshold, cols)} = '{KEPT}')"


def is_kept_score(score: float | None, threshold: float) -> bool:
    """The judge's part of the rules: a readable score at or above the threshold."""
    return score is not None and score >= threshold


@dataclass(frozen=True)
class VerdictCounts:
    """Pairs of the current data by verdict; every door reports these same numbers."""

    pairs: int = 0
    kept: int = 0
    dropped: int = 0
    unjudged: int = 0
    judged: int = 0
    dropped_by_human: int = 0
    dropped_by_gate: int = 0
    dropped_by_judge: int = 0
    flagged: int = 0


# One pass over the current pairs; the flagged count comes from the gates' own table.
def counts_sql(threshold: str = ":threshold", where: str = "") -> str:
    """SQL over `pair_state` giving one row in VerdictCounts' field order."""
    verdict, by = verdict_sql(threshold), dropped_by_sql(threshold)
    return (f"SELECT COUNT(*), COALESCE(SUM(v = '{KEPT}'), 0), COALESCE(SUM(v = '{DROPPED}'), 0), "
            f"COALESCE(SUM(v = '{UNJUDGED}'), 0), COALESCE(SUM(j), 0), "
            f"COALESCE(SUM(b = '{BY_HUMAN}'), 0), COALESCE(SUM(b = '{BY_GATE}'), 0), "
            f"COALESCE(SUM(b = '{BY_JUDGE}'), 0), COALESCE(SUM(f), 0) FROM ("
            f"SELECT {verdict} AS v, {by} AS b, {judged_sql()} AS j, "
            f"EXISTS (SELECT 1 FROM pair_gates x WHERE x.pair_id = pair_state.pair_id "
            f"AND x.action = 'flag') AS f FROM pair_state {where})")
