"""Evaluation figures from stored verdicts: relative score and its interval, wins, position bias."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from visinstruct.core.records import TASKS
from visinstruct.core.store.database import Store

RESAMPLES = 2000
CONFIDENCE = 0.95
_EQUAL = 1e-9

ItemKey = tuple[int, str, str, int]  # (image_id, task, mode, item)


@dataclass(frozen=True)
class VerdictRow:
    """One stored evaluator verdict, scores already mapped back to ours and the baseline."""

    image_id: int
    task: str
    mode: str
    item: int
    shown_first: str  # ours | baseline
    ours_score: float | None
    baseline_score: float | None
    parsed: bool

    @property
    def key(self) -> ItemKey:
        """The compared item this verdict belongs to."""
        return (self.image_id, self.task, self.mode, self.item)


@dataclass(frozen=True)
class ComparedItem:
    """One compared item: both sides' scores averaged over its parsed orders.

    `bias` is how much the first-shown answer gained, known only when both orders parsed.
    """

    key: ItemKey
    ours: float
    baseline: float
    bias: float | None


@dataclass(frozen=True)
class Summary:
    """The figures of one group of items; the field names are the `evaluate --json` contract."""

    relative_score: float | None
    ci_low: float | None
    ci_high: float | None
    wins: int
    ties: int
    losses: int
    n: int
    position_bias: float | None
    unparsed: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict in the contract's key order."""
        return asdict(self)


def latest_verdicts(rows: Iterable[VerdictRow]) -> list[VerdictRow]:
    """One verdict per (item, order): the last given wins, so pass rows oldest first."""
    latest: dict[tuple[ItemKey, str], VerdictRow] = {}
    for row in rows:
        latest[(row.key, row.shown_first)] = row
    return list(latest.values())


def compared_items(rows: Iterable[VerdictRow]) -> list[ComparedItem]:
    """Items with at least one parsed verdict, in first-seen order."""
    orders: dict[ItemKey, dict[str, VerdictRow]] = {}
    for row in latest_verdicts(rows):
        if row.parsed and row.ours_score is not None and row.baseline_score is not None:
            orders.setdefault(row.key, {})[row.shown_first] = row
    items = []
    for key, by_order in orders.items():
        verdicts = list(by_order.values())
        ours = sum(v.ours_score or 0.0 for v in verdicts) / len(verdicts)
        baseline = sum(v.baseline_score or 0.0 for v in verdicts) / len(verdicts)
        bias = None
        ours_first, baseline_first = by_order.get("ours"), by_order.get("baseline")
        if ours_first is not None and baseline_first is not None:
            # First-shown minus second-shown, averaged over the two orders: the quality
            # difference between the answers cancels and only the gain from going first is left.
            gain_ours = _score(ours_first.ours_score) - _score(ours_first.baseline_score)
            gain_baseline = (_score(baseline_first.baseline_score)
                             - _score(baseline_first.ours_score))
            bias = (gain_ours + gain_baseline) / 2
        items.append(ComparedItem(key, ours, baseline, bias))
    return items


def _score(value: float | None) -> float:
    return 0.0 if value is None else value


def relative_score(items: Sequence[ComparedItem]) -> float | None:
    """100 x (mean of ours) / (mean of the baseline), or None without items."""
    baseline = sum(i.baseline for i in items)
    if not items or baseline <= 0:
        return None
    return 100.0 * sum(i.ours for i in items) / baseline


def bootstrap_interval(items: Sequence[ComparedItem], *, seed: int = 0,
                       resamples: int = RESAMPLES,
                       confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of the relative score, resampling items with a seeded RNG."""
    if not items:
        return None, None
    rng = random.Random(seed)
    ours = [i.ours for i in items]
    baseline = [i.baseline for i in items]
    positions = range(len(items))
    stats = []
    for _ in range(resamples):
        drawn = rng.choices(positions, k=len(items))
        drawn_baseline = sum(baseline[p] for p in drawn)
        if drawn_baseline > 0:
            stats.append(100.0 * sum(ours[p] for p in drawn) / drawn_baseline)
    if not stats:
        return None, None
    stats.sort()
    tail = (1.0 - confidence) / 2
    last = len(stats) - 1
    return stats[round(tail * last)], stats[round((1.0 - tail) * last)]


def summarize(rows: Iterable[VerdictRow], *, seed: int = 0, resamples: int = RESAMPLES) -> Summary:
    """The figures of one group of verdicts (e.g. one task type, or all)."""
    latest = latest_verdicts(rows)
    items = compared_items(latest)
    unparsed = sum(1 for row in latest if not row.parsed)
    score = relative_score(items)
    low, high = bootstrap_interval(items, seed=seed, resamples=resamples)
    biases = [i.bias for i in items if i.bias is not None]
    return Summary(
        relative_score=_round(score, 2),
        ci_low=_round(low, 2),
        ci_high=_round(high, 2),
        wins=sum(1 for i in items if i.ours - i.baseline > _EQUAL),
        ties=sum(1 for i in items if abs(i.ours - i.baseline) <= _EQUAL),
        losses=sum(1 for i in items if i.baseline - i.ours > _EQUAL),
        n=len(items),
        position_bias=_round(sum(biases) / len(biases), 3) if biases else None,
        unparsed=unparsed,
    )


def summarize_by_task(rows: Iterable[VerdictRow], *, seed: int = 0, resamples: int = RESAMPLES,
                      tasks: Sequence[str] = TASKS) -> dict[str, Summary]:
    """A Summary per task type; every task in `tasks` is present, empty ones with zero counts."""
    rows = list(rows)
    return {task: summarize([r for r in rows if r.task == task], seed=seed, resamples=resamples)
            for task in tasks}


def results(rows: Iterable[VerdictRow], *, seed: int = 0,
            resamples: int = RESAMPLES) -> dict[str, Any]:
    """{"overall": {...}, "by_task": {task: {...}}}: the core of `evaluate --json`."""
    rows = list(rows)
    return {
        "overall": summarize(rows, seed=seed, resamples=resamples).to_dict(),
        "by_task": {task: summary.to_dict() for task, summary in
                    summarize_by_task(rows, seed=seed, resamples=resamples).items()},
    }


def stored_verdict_rows(store: Store, mode: str, model: str, version: str,
                        expected: dict[tuple[int, str, int], int]) -> list[VerdictRow]:
    """Stored verdicts, oldest first, of the items in `expected` that were made on its generation.

    `expected` maps (image, task, item) to the generation our side of the item comes from.
    """
    ids = sorted({key[0] for key in expected})
    rows: list[tuple[int, VerdictRow]] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for r in store.query(
                f"SELECT id, image_id, task, item, shown_first, ours_score, baseline_score, "
                f"parsed, generation_id FROM evaluations WHERE mode = ? AND model = ? "
                f"AND prompt_version = ? AND image_id IN ({marks})",
                (mode, model, version, *chunk)):
            if expected.get((r[1], r[2], r[3])) == r[8]:
                rows.append((r[0], VerdictRow(r[1], r[2], mode, r[3], r[4], r[5], r[6],
                                              bool(r[7]))))
    return [row for _, row in sorted(rows, key=lambda pair: pair[0])]


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
