"""How far the judge agrees with a human: kappa, Spearman, precision and recall with intervals.

The inputs are blind review decisions (the human never saw the score), so agreement is not
inflated by the human deferring to the judge.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from visinstruct.core.store.database import Store

RESAMPLES = 1000
SEED = 0
CANDIDATE_THRESHOLDS: tuple[float, ...] = tuple(float(s) for s in range(1, 11))

# (judge score, human accepted)
Decision = tuple[float, bool]
Interval = tuple[float, float] | None


def cohen_kappa(kept: Sequence[bool], accepted: Sequence[bool]) -> float | None:
    """Cohen's kappa of two yes/no raters; None when chance agreement is already total."""
    n = len(kept)
    if n == 0 or n != len(accepted):
        return None
    observed = sum(k == a for k, a in zip(kept, accepted, strict=True)) / n
    kept_rate = sum(kept) / n
    accepted_rate = sum(accepted) / n
    chance = kept_rate * accepted_rate + (1 - kept_rate) * (1 - accepted_rate)
    if chance >= 1:
        return None
    return (observed - chance) / (1 - chance)


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing the mean of their positions."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        shared = (start + end) / 2 + 1
        for position in range(start, end + 1):
            result[order[position]] = shared
        start = end + 1
    return result


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rho (Pearson on tie-averaged ranks); None when either side is constant."""
    if len(xs) < 2 or len(xs) != len(ys):
        return None
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    if vx == 0 or vy == 0:
        return None
    return cov / math.sqrt(vx * vy)


def precision(kept: Sequence[bool], accepted: Sequence[bool]) -> float | None:
    """Of the pairs the judge keeps, the share a human accepted."""
    chosen = [a for k, a in zip(kept, accepted, strict=True) if k]
    return sum(chosen) / len(chosen) if chosen else None


def recall(kept: Sequence[bool], accepted: Sequence[bool]) -> float | None:
    """Of the pairs a human accepted, the share the judge keeps."""
    wanted = [k for k, a in zip(kept, accepted, strict=True) if a]
    return sum(wanted) / len(wanted) if wanted else None


# -- the same figures from a count table ----------------------------------------------------------
# Every figure depends only on how many decisions share each (score, accepted) cell, and
# scores take few values, so the bootstrap resamples cell counts: O(cells) per figure
# instead of O(n log n), and the same distribution as resampling the decisions themselves.
Table = dict[tuple[float, bool], int]
NAMES: tuple[str, ...] = ("kappa", "spearman", "precision", "recall")


def count_table(decisions: Sequence[Decision]) -> Table:
    """How many decisions fall in each (score, accepted) cell."""
    return dict(Counter((float(score), bool(accepted)) for score, accepted in decisions))


def table_figures(table: Table, threshold: float) -> dict[str, float | None]:
    """Kappa, Spearman, precision and recall of a count table; the same values as the
    functions above on the decisions it counts."""
    n = sum(table.values())
    cells: Counter[tuple[bool, bool]] = Counter()   # (kept, accepted) -> count
    for (score, accepted), count in table.items():
        cells[(score >= threshold, accepted)] += count
    both, kept_only = cells[(True, True)], cells[(True, False)]
    accepted_only, neither = cells[(False, True)], cells[(False, False)]
    kappa = None
    if n:
        kept_rate, accepted_rate = (both + kept_only) / n, (both + accepted_only) / n
        chance = kept_rate * accepted_rate + (1 - kept_rate) * (1 - accepted_rate)
        if chance < 1:
            kappa = ((both + neither) / n - chance) / (1 - chance)
    return {"kappa": kappa, "spearman": _table_spearman(table, n),
            "precision": both / (both + kept_only) if both + kept_only else None,
            "recall": both / (both + accepted_only) if both + accepted_only else None}


def _table_spearman(table: Table, n: int) -> float | None:
    if n < 2:
        return None
    per_score: Counter[float] = Counter()
    for (score, _accepted), count in table.items():
        per_score[score] += count
    score_rank: dict[float, float] = {}
    before = 0
    for score in sorted(per_score):
        score_rank[score] = before + (per_score[score] + 1) / 2   # ties share the mean rank
        before += per_score[score]
    rejected = sum(c for (_s, accepted), c in table.items() if not accepted)
    verdict_rank = {False: (rejected + 1) / 2, True: rejected + (n - rejected + 1) / 2}
    mean = (n + 1) / 2   # the mean of ranks 1..n, ties or not
    cov = vx = vy = 0.0
    for (score, accepted), count in table.items():
        dx, dy = score_rank[score] - mean, verdict_rank[accepted] - mean
        cov += count * dx * dy
        vx += count * dx * dx
        vy += count * dy * dy
    if vx == 0 or vy == 0:
        return None
    return cov / math.sqrt(vx * vy)


def bootstrap(decisions: Sequence[Decision], threshold: float, *,
              resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, Interval]:
    """95% percentile bootstrap interval of each figure, on one seeded set of resamples.

    Resamples where a figure is undefined (say, nobody accepted anything) are left out of
    that figure's interval; None when fewer than two decisions or no resample is defined.
    """
    values: dict[str, list[float]] = {name: [] for name in NAMES}
    n = len(decisions)
    if n >= 2:
        rng = random.Random(seed)
        cells = sorted(count_table(decisions).items())
        weights = list(itertools.accumulate(count for _cell, count in cells))
        for _ in range(resamples):
            drawn = Counter(rng.choices(range(len(cells)), cum_weights=weights, k=n))
            resampled = {cells[index][0]: count for index, count in drawn.items()}
            for name, value in table_figures(resampled, threshold).items():
                if value is not None:
                    values[name].append(value)
    intervals: dict[str, Interval] = {}
    for name, found in values.items():
        found.sort()
        intervals[name] = (_quantile(found, 0.025), _quantile(found, 0.975)) if found else None
    return intervals


def _quantile(ordered: Sequence[float], q: float) -> float:
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def best_threshold(decisions: Sequence[Decision],
                   candidates: Sequence[float] = CANDIDATE_THRESHOLDS) -> tuple[float | None,
                                                                                  float | None]:
    """The candidate threshold with the highest kappa (the lower one on ties), and that kappa."""
    best: tuple[float | None, float | None] = (None, None)
    table = count_table(decisions)
    for threshold in candidates:
        kappa = table_figures(table, threshold)["kappa"]
        if kappa is not None and (best[1] is None or kappa > best[1] + 1e-12):
            best = (threshold, kappa)
    return best


@dataclass(frozen=True)
class JudgeAgreement:
    """The judge against blind human decisions at one threshold; every figure None when n is 0."""

    n: int
    threshold: float
    accepted: int
    kept: int
    kappa: float | None
    kappa_ci: Interval
    spearman: float | None
    spearman_ci: Interval
    precision: float | None
    precision_ci: Interval
    recall: float | None
    recall_ci: Interval
    best_threshold: float | None
    best_kappa: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (intervals as [low, high] lists)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}


def judge_agreement(decisions: Sequence[Decision], threshold: float, *,
                    resamples: int = RESAMPLES, seed: int = SEED) -> JudgeAgreement:
    """Every agreement figure of `decisions` at `threshold`, each with its bootstrap interval."""
    intervals = bootstrap(decisions, threshold, resamples=resamples, seed=seed)
    point = table_figures(count_table(decisions), threshold)
    figures: dict[str, Any] = {}
    for name in NAMES:
        figures[name] = point[name]
        figures[f"{name}_ci"] = intervals[name]
    best, best_kappa = best_threshold(decisions)
    kept = sum(score >= threshold for score, _ in decisions)
    return JudgeAgreement(n=len(decisions), threshold=threshold,
                          accepted=sum(accepted for _, accepted in decisions), kept=kept,
                          best_threshold=best, best_kappa=best_kappa, **figures)


# -- from the store ------------------------------------------------------------------------------
def blind_decisions(store: Store) -> list[Decision]:
    """(current judge score, accepted) for every pair with a blind decision, its latest one.

    Pairs without a readable score are left out: there is nothing to agree with.
    """
    rows = store.query(
        "SELECT (SELECT j.score FROM judgements j WHERE j.pair_id = r.pair_id "
        "        ORDER BY j.id DESC LIMIT 1) AS score, r.decision FROM reviews r "
        "WHERE r.blind = 1 AND r.id = (SELECT MAX(r2.id) FROM reviews r2 "
        "      WHERE r2.pair_id = r.pair_id AND r2.blind = 1) ORDER BY r.id")
    return [(float(score), decision == "accept") for score, decision in rows
            if score is not None]


def stored_judge_agreement(store: Store, threshold: float, *,
                           resamples: int = RESAMPLES) -> JudgeAgreement:
    """judge_agreement over the store's blind review decisions."""
    return judge_agreement(blind_decisions(store), threshold, resamples=resamples)
