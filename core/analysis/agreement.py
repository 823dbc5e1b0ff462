"""How far the judge agrees with a human: kappa, Spearman, precision and recall with intervals.

The inputs are blind review decisions (the human never saw the score), so agreement is not
inflated by the human deferring to the judge.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
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
    observed = sum(k == a for k, a in zip(kept, accepted)) / n
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
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    if vx == 0 or vy == 0:
        return None
    return cov / math.sqrt(vx * vy)


def precision(kept: Sequence[bool], accepted: Sequence[bool]) -> float | None:
    """Of the pairs the judge keeps, the share a human accepted."""
    chosen = [a for k, a in zip(kept, accepted) if k]
    return sum(chosen) / len(chosen) if chosen else None


def recall(kept: Sequence[bool], accepted: Sequence[bool]) -> float | None:
    """Of the pairs a human accepted, the share the judge keeps."""
    wanted = [k for k, a in zip(kept, accepted) if a]
    return sum(wanted) / len(wanted) if wanted else None


def _kept(decisions: Sequence[Decision], threshold: float) -> list[bool]:
    return [score >= threshold for score, _ in decisions]


def _human(decisions: Sequence[Decision]) -> list[bool]:
    return [accepted for _, accepted in decisions]


Metric = Callable[[Sequence[Decision], float], "float | None"]
METRICS: dict[str, Metric] = {
    "kappa": lambda d, t: cohen_kappa(_kept(d, t), _human(d)),
    "spearman": lambda d, t: spearman([s for s, _ in d], [float(a) for _, a in d]),
    "precision": lambda d, t: precision(_kept(d, t), _human(d)),
    "recall": lambda d, t: recall(_kept(d, t), _human(d)),
}


def bootstrap(decisions: Sequence[Decision], threshold: float, metrics: dict[str, Metric], *,
              resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, Interval]:
    """95% percentile bootstrap interval of each metric, on one seeded set of resamples.

    Resamples where a metric is undefined (say, nobody accepted anything) are left out of
    that metric's interval; None when fewer than two decisions or no resample is defined.
    """
    values: dict[str, list[float]] = {name: [] for name in metrics}
    n = len(decisions)
    if n >= 2:
        rng = random.Random(seed)
        for _ in range(resamples):
            drawn = [decisions[rng.randrange(n)] for _ in range(n)]
            for name, metric in metrics.items():
                value = metric(drawn, threshold)
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
    for threshold in candidates:
        kappa = METRICS["kappa"](decisions, threshold)
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
    intervals = bootstrap(decisions, threshold, METRICS, resamples=resamples, seed=seed)
    figures: dict[str, Any] = {}
    for name, metric in METRICS.items():
        figures[name] = metric(decisions, threshold) if decisions else None
        figures[f"{name}_ci"] = intervals[name]
    best, best_kappa = best_threshold(decisions)
    return JudgeAgreement(n=len(decisions), threshold=threshold,
                          accepted=sum(_human(decisions)), kept=sum(_kept(decisions, threshold)),
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
