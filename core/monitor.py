"""Read-only queries the run monitor needs to follow a store that another process writes."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from visinstruct.core.config import Config
from visinstruct.core.cost import CostReport, cost_report
from visinstruct.core.status import stored_config
from visinstruct.core.store import Store

# Latencies behind the p50/p95 figures: enough for stable percentiles, cheap to fetch.
_LATENCY_WINDOW = 500
# Calls behind the "health" of an endpoint when only the ledger is known.
_HEALTH_WINDOW = 5


@dataclass(frozen=True)
class RunProgress:
    """The latest run row and how many of its units the store shows as done."""

    run_id: int | None
    status: str                  # none | running | finished | interrupted | failed | budget
    started_at: float | None
    finished_at: float | None
    total_units: int
    done_units: int
    failed_units: int
    generation_model: str = ""
    message: str = ""


@dataclass(frozen=True)
class EndpointStats:
    """One endpoint's figures from the ledger; `limit` is None when only the store is known."""

    model: str
    endpoint: str
    in_flight: int
    done: int
    errors: int
    throttles: int
    p50_ms: float
    p95_ms: float
    tokens_out: int
    health: str
    limit: int | None = None
    instances: int = 1


@dataclass(frozen=True)
class InFlightCall:
    """A call sent and not yet answered: one worker lane."""

    call_id: int
    stage: str
    image_id: int
    task: str
    model: str
    endpoint: str
    attempt: int
    started_at: float


@dataclass(frozen=True)
class CallError:
    """A failed call attempt, as the error feed shows it."""

    call_id: int
    finished_at: float
    stage: str
    image_id: int
    task: str
    model: str
    endpoint: str
    kind: str
    error_class: str
    message: str


@dataclass(frozen=True)
class JudgedSample:
    """A judged conversation: its scores (one per pair) and its first question."""

    generation_id: int
    image_id: int
    task: str
    scores: tuple[float | None, ...]
    question: str = ""


@dataclass(frozen=True)
class ScoreCounts:
    """Judge scores seen in judgements with ids in (after_id, last_id]; bucket 0 is unreadable."""

    last_id: int
    buckets: dict[int, int] = field(default_factory=dict)
    kept: int = 0

    @property
    def judged(self) -> int:
        return sum(self.buckets.values())


@dataclass(frozen=True)
class StoreSnapshot:
    """Everything the monitor shows, read from the store at one moment."""

    progress: RunProgress
    endpoints: tuple[EndpointStats, ...]
    in_flight: tuple[InFlightCall, ...]
    errors: tuple[CallError, ...]
    samples: tuple[JudgedSample, ...]
    scores: ScoreCounts
    threshold: float
    full_scores: bool            # True: `scores` counts every judgement; False: only new ones
    cost: CostReport | None = None


def threshold_of(store: Store, fallback: float) -> float:
    """The judge threshold the last run used (kept in meta), else `fallback`."""
    value = store.get_meta("judge_threshold")
    try:
        return float(value) if value is not None else fallback
    except ValueError:
        return fallback


def run_progress(store: Store) -> RunProgress:
    """The latest run and its units done (judged or unparseable) and failed, as the store shows them."""
    row = store.reader().execute(
        "SELECT id, status, started_at, finished_at, total_units, config, message "
        "FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return RunProgress(None, "none", None, None, 0, 0, 0)
    run_id, status, started, finished, total, settings, message = tuple(row)
    try:
        model = str(json.loads(settings or "{}").get("generation", {}).get("model", ""))
    except (ValueError, AttributeError):
        model = ""
    done = int(store.scalar(
        "SELECT COUNT(*) FROM (SELECT image_id, task FROM generations g "
        "WHERE purpose = 'run' AND (? = '' OR model = ?) AND (status = 'parse_failure' OR "
        "EXISTS (SELECT 1 FROM judgements j WHERE j.generation_id = g.id)) "
        "GROUP BY image_id, task)", (model, model)) or 0)
    # A unit failed when a call of this run for it ended in error and none of its calls succeeded.
    failed = int(store.scalar(
        "SELECT COUNT(*) FROM (SELECT image_id, task FROM llm_calls WHERE run_id = ? "
        "GROUP BY key HAVING SUM(status = 'error') > 0 AND SUM(status IN ('ok', 'in_flight')) = 0)",
        (run_id,)) or 0)
    total = int(total or 0)
    done_units = min(total, done + failed) if total else done + failed
    return RunProgress(int(run_id), str(status), started, finished, total, done_units, failed,
                       model, str(message or ""))


def _percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    return float(sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))])


def endpoint_stats(store: Store, run_id: int | None, config: Config | None = None) -> list[EndpointStats]:
    """Per (model, endpoint) figures of one run from llm_calls, ordered by model and endpoint."""
    if run_id is None:
        return []
    rows = store.query(
        "SELECT model, COALESCE(endpoint, ''), SUM(status = 'in_flight'), SUM(status = 'ok'), "
        "SUM(status = 'error' AND COALESCE(error_kind, '') != 'backpressure'), "
        "SUM(status = 'error' AND error_kind = 'backpressure'), SUM(COALESCE(tokens_out, 0)) "
        "FROM llm_calls WHERE run_id = ? GROUP BY 1, 2 ORDER BY 1, 2", (run_id,))
    stats = []
    for model, endpoint, in_flight, done, errors, throttles, tokens_out in rows:
        latencies = sorted(r[0] for r in store.query(
            "SELECT latency_ms FROM llm_calls WHERE run_id = ? AND model = ? AND endpoint = ? "
            "AND status = 'ok' ORDER BY id DESC LIMIT ?", (run_id, model, endpoint, _LATENCY_WINDOW)))
        recent = [r[0] for r in store.query(
            "SELECT status FROM llm_calls WHERE run_id = ? AND model = ? AND endpoint = ? "
            "AND status IN ('ok', 'error') ORDER BY id DESC LIMIT ?",
            (run_id, model, endpoint, _HEALTH_WINDOW))]
        failures = len(recent) if all(s == "error" for s in recent) else recent.index("ok")
        health = "down" if recent and failures >= _HEALTH_WINDOW else (
            "degraded" if failures else "healthy")
        instances = 1
        if config is not None and model in config.models:
            instances = config.models[model].instances
        stats.append(EndpointStats(str(model), str(endpoint), int(in_flight or 0), int(done or 0),
                                   int(errors or 0), int(throttles or 0),
                                   _percentile(latencies, 0.5), _percentile(latencies, 0.95),
                                   int(tokens_out or 0), health, None, instances))
    return stats


def in_flight_calls(store: Store, limit: int = 200) -> list[InFlightCall]:
    """Calls written `in_flight` and not yet finished, oldest first."""
    return [InFlightCall(int(r[0]), r[1], int(r[2] or 0), r[3] or "", r[4], r[5] or "", int(r[6]),
                         float(r[7]))
            for r in store.query(
                "SELECT id, stage, image_id, task, model, endpoint, attempt, started_at "
                "FROM llm_calls WHERE status = 'in_flight' ORDER BY id LIMIT ?", (limit,))]


def recent_errors(store: Store, limit: int = 50) -> list[CallError]:
    """The latest failed call attempts, newest first."""
    return [CallError(int(r[0]), float(r[1] or r[2]), r[3], int(r[4] or 0), r[5] or "", r[6],
                      r[7] or "", r[8] or "", r[9] or "", r[10] or "")
            for r in store.query(
                "SELECT id, finished_at, started_at, stage, image_id, task, model, endpoint, "
                "error_kind, error_class, error FROM llm_calls WHERE status = 'error' "
                "ORDER BY id DESC LIMIT ?", (limit,))]


def first_questions(store: Store, generation_ids: Sequence[int]) -> dict[int, str]:
    """The first question of each generation."""
    if not generation_ids:
        return {}
    marks = ",".join("?" * len(generation_ids))
    return {int(r[0]): str(r[1]) for r in store.query(
        f"SELECT generation_id, question FROM pairs WHERE generation_id IN ({marks}) AND idx = 0",
        list(generation_ids))}


def latest_samples(store: Store, limit: int = 20) -> list[JudgedSample]:
    """The most recently judged run conversations with their scores, newest first."""
    recent: list[int] = []
    for row in store.query("SELECT generation_id FROM judgements ORDER BY id DESC LIMIT ?",
                           (limit * 12,)):
        if row[0] not in recent:
            recent.append(int(row[0]))
    if not recent:
        return []
    marks = ",".join("?" * len(recent))
    heads = {int(r[0]): (int(r[1]), str(r[2])) for r in store.query(
        f"SELECT id, image_id, task FROM generations WHERE id IN ({marks}) AND purpose = 'run'",
        recent)}
    scores: dict[int, dict[int, float | None]] = {}
    for gid, idx, score in store.query(
            f"SELECT j.generation_id, p.idx, j.score FROM judgements j JOIN pairs p ON p.id = j.pair_id "
            f"WHERE j.generation_id IN ({marks}) ORDER BY j.id", recent):
        scores.setdefault(int(gid), {})[int(idx)] = score
    ids = [g for g in recent if g in heads][:limit]
    questions = first_questions(store, ids)
    return [JudgedSample(g, heads[g][0], heads[g][1],
                         tuple(v for _, v in sorted(scores.get(g, {}).items())),
                         questions.get(g, ""))
            for g in ids]


def score_counts(store: Store, threshold: float, after_id: int = 0) -> ScoreCounts:
    """Judge scores of run conversations (rounded to whole buckets) in judgements after `after_id`."""
    last = int(store.scalar("SELECT COALESCE(MAX(id), 0) FROM judgements") or 0)
    if last <= after_id:
        return ScoreCounts(after_id)
    buckets: Counter[int] = Counter()
    kept = 0
    for bucket, count, kept_here in store.query(
            "SELECT CAST(ROUND(COALESCE(j.score, 0)) AS INTEGER), COUNT(*), "
            "SUM(j.score IS NOT NULL AND j.score >= ?) FROM judgements j "
            "JOIN generations g ON g.id = j.generation_id "
            "WHERE j.id > ? AND j.id <= ? AND g.purpose = 'run' GROUP BY 1",
            (threshold, after_id, last)):
        buckets[max(0, min(10, int(bucket)))] += int(count)
        kept += int(kept_here or 0)
    return ScoreCounts(last, dict(buckets), kept)


def run_cost(store: Store, threshold: float) -> CostReport:
    """What the store's runs cost so far and projected, priced with the models the last run used."""
    return cost_report(store, stored_config(store, threshold))


def take_snapshot(store: Store, config: Config, *, after_judgement_id: int = 0,
                  with_cost: bool = True, samples: int = 20, errors: int = 50) -> StoreSnapshot:
    """Read everything the monitor shows; scores only after `after_judgement_id` (0: all)."""
    threshold = threshold_of(store, config.judge.threshold)
    progress = run_progress(store)
    priced = stored_config(store, threshold) if store.get_meta("models") else config
    return StoreSnapshot(
        progress=progress,
        endpoints=tuple(endpoint_stats(store, progress.run_id, priced)),
        in_flight=tuple(in_flight_calls(store)),
        errors=tuple(recent_errors(store, errors)),
        samples=tuple(latest_samples(store, samples)),
        scores=score_counts(store, threshold, after_judgement_id),
        threshold=threshold,
        full_scores=after_judgement_id == 0,
        cost=cost_report(store, priced) if with_cost else None,
    )
