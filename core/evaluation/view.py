"""What the evaluation screen reads: stored verdict sets, their figures, and a per-sample list."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from visinstruct.core.evaluation.aggregate import (
    Summary,
    VerdictRow,
    compared_items,
    latest_verdicts,
    summarize,
    summarize_by_task,
)
from visinstruct.core.records import TASKS
from visinstruct.core.store.database import Store

_EQUAL = 1e-9
# Verdicts on prompt-lab trials are the lab's own; the evaluation screen shows the run's.
_NOT_LAB = ("FROM evaluations e LEFT JOIN generations g ON g.id = e.generation_id "
            "WHERE COALESCE(g.purpose, 'run') NOT LIKE 'lab:%'")


@dataclass(frozen=True)
class EvaluationSet:
    """Verdicts made in one mode by one evaluator with one prompt version: no figure mixes sets."""

    mode: str
    model: str
    prompt_version: str
    verdicts: int
    last_at: float

    @property
    def label(self) -> str:
        return f"{self.mode} · {self.model} · {self.prompt_version} ({self.verdicts} verdicts)"


@dataclass(frozen=True)
class EvaluatedSample:
    """One (image, task) compared with the baseline, averaged over its items and both orders."""

    image_id: int
    task: str
    ours: float | None
    baseline: float | None
    items: int
    unparsed: int
    bias: float | None

    @property
    def outcome(self) -> str:
        """win, tie or loss for our side; 'unparsed' when no verdict could be read."""
        if self.ours is None or self.baseline is None:
            return "unparsed"
        if self.ours - self.baseline > _EQUAL:
            return "win"
        if self.baseline - self.ours > _EQUAL:
            return "loss"
        return "tie"


@dataclass(frozen=True)
class EvaluationOverview:
    """The figures of one set overall and per task, and its samples."""

    chosen: EvaluationSet | None
    overall: Summary
    by_task: dict[str, Summary]
    samples: tuple[EvaluatedSample, ...]


def evaluation_sets(store: Store) -> list[EvaluationSet]:
    """Every stored verdict set, most recently used first."""
    return [EvaluationSet(r[0], r[1] or "", r[2] or "", int(r[3]), float(r[4] or 0.0))
            for r in store.query(
        f"SELECT e.mode, e.model, e.prompt_version, COUNT(*), MAX(e.created_at) {_NOT_LAB} "
        "GROUP BY e.mode, e.model, e.prompt_version "
        "ORDER BY MAX(e.created_at) DESC, MAX(e.id) DESC")]


def verdict_rows(store: Store, chosen: EvaluationSet) -> list[VerdictRow]:
    """The set's verdicts, oldest first (the later verdict for an item and order wins)."""
    return [VerdictRow(r[0], r[1], chosen.mode, r[2], r[3], r[4], r[5], bool(r[6]))
            for r in store.iter_query(
        f"SELECT e.image_id, e.task, e.item, e.shown_first, e.ours_score, e.baseline_score, "
        f"e.parsed {_NOT_LAB} AND e.mode = ? AND e.model IS ? AND e.prompt_version IS ? "
        "ORDER BY e.id",
        (chosen.mode, chosen.model or None, chosen.prompt_version or None))]


def evaluated_samples(rows: list[VerdictRow]) -> tuple[EvaluatedSample, ...]:
    """Per (image, task): mean scores of its compared items, unparsed verdicts, position bias."""
    latest = latest_verdicts(rows)
    unparsed: dict[tuple[int, str], int] = defaultdict(int)
    order: dict[tuple[int, str], None] = {}
    for row in latest:
        order[(row.image_id, row.task)] = None
        if not row.parsed:
            unparsed[(row.image_id, row.task)] += 1
    items = defaultdict(list)
    for item in compared_items(latest):
        items[(item.key[0], item.key[1])].append(item)
    samples = []
    for key in sorted(order, key=lambda k: (k[0], TASKS.index(k[1]) if k[1] in TASKS else 9)):
        group = items.get(key, [])
        biases = [i.bias for i in group if i.bias is not None]
        samples.append(EvaluatedSample(
            key[0], key[1],
            sum(i.ours for i in group) / len(group) if group else None,
            sum(i.baseline for i in group) / len(group) if group else None,
            len(group), unparsed.get(key, 0),
            sum(biases) / len(biases) if biases else None))
    return tuple(samples)


def evaluation_overview(store: Store, chosen: EvaluationSet | None = None, *, seed: int = 0,
                        resamples: int = 2000) -> EvaluationOverview:
    """Figures of `chosen` (the most recent set when None): relative score with interval,
    wins, ties, losses, position bias and unparsed verdicts, overall and per task."""
    if chosen is None:
        sets = evaluation_sets(store)
        chosen = sets[0] if sets else None
    rows = verdict_rows(store, chosen) if chosen is not None else []
    return EvaluationOverview(chosen, summarize(rows, seed=seed, resamples=resamples),
                              summarize_by_task(rows, seed=seed, resamples=resamples),
                              evaluated_samples(rows))
