"""Read-only queries the run monitor needs to follow a store that another process writes."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from visinstruct.core.config import Config
from visinstruct.core.events import BatchJobUpdated, CallIdentity, EndpointFigures, percentile
from visinstruct.core.store.batch_jobs import batch_job_rows
from visinstruct.core.store.cost import CostReport, cost_report, stored_config
from visinstruct.core.store.database import Store
from visinstruct.core.store.pair_tally import TALLIED, TALLY_COLUMNS, has_tally
from visinstruct.core.store.pictures import pictures_sent

# Re-exported: the monitor's readers reach every count from here.
from visinstruct.core.store.run_tallies import LedgerTally, UnitTally
from visinstruct.core.store.verdicts import PAIR_STATE, judged_sql, kept_sql, verdict_sql

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
    pid: int | None = None       # the process that wrote (or writes) the run
    start_done: int | None = None  # units done when the run started (None: not recorded)
    pictures_sent: int = 0       # pictures carried by the run's answered calls


@dataclass(frozen=True)
class InFlightCall(CallIdentity):
    """A call sent and not yet answered: one worker lane."""

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
    kept: int | None = None      # by store/verdicts.py's rules when read from the store


@dataclass(frozen=True)
class ScoreCounts:
    """Judge scores seen in judgements with ids in (after_id, last_id]; bucket 0 is unreadable."""

    last_id: int
    buckets: dict[int, int] = field(default_factory=dict)
    kept: int = 0
    threshold: float = 7.0

    @property
    def judged(self) -> int:
        """Pairs with a readable score (bucket 0, unreadable, is not judged)."""
        return sum(n for bucket, n in self.buckets.items() if bucket > 0)


@dataclass(frozen=True)
class StoreSnapshot:
    """Everything the monitor shows, read from the store at one moment."""

    progress: RunProgress
    endpoints: tuple[EndpointFigures, ...]
    in_flight: tuple[InFlightCall, ...]
    errors: tuple[CallError, ...]
    samples: tuple[JudgedSample, ...]
    scores: ScoreCounts
    threshold: float
    full_scores: bool            # True: `scores` counts every current pair (the store's reads)
    cost: CostReport | None = None
    batch_jobs: tuple[BatchJobUpdated, ...] = ()


def threshold_of(store: Store, fallback: float) -> float:
    """The judge threshold the last run used (kept in meta), else `fallback`."""
    value = store.get_meta("judge_threshold")
    try:
        return float(value) if value is not None else fallback
    except ValueError:
        return fallback


LatestRun = tuple[int, str, float | None, float | None, int, str, str, int | None]


def latest_run(store: Store) -> LatestRun | None:
    """The last run's (id, status, started_at, finished_at, total_units, model, message,
    start_done).

    `model` is the run's generation model; `start_done` the units done when it started (None
    for a run from before migration 18, or one that stopped before counting them).
    """
    row = store.reader().execute(
        "SELECT id, status, started_at, finished_at, total_units, config, message, start_done "
        "FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return None
    run_id, status, started, finished, total, settings, message, start_done = tuple(row)
    try:
        model = str(json.loads(settings or "{}").get("generation", {}).get("model", ""))
    except (ValueError, AttributeError):
        model = ""
    return (int(run_id), str(status), started, finished, int(total or 0), model,
            str(message or ""), None if start_done is None else int(start_done))


def failed_units(store: Store, run_id: int) -> int:
    """Units of a run whose calls ended in error with none of their calls answered or in flight."""
    return int(store.scalar(
        "SELECT COUNT(DISTINCT e.key) FROM llm_calls e WHERE e.status = 'error' AND e.run_id = ? "
        "AND NOT EXISTS (SELECT 1 FROM llm_calls c WHERE c.key = e.key AND c.run_id = e.run_id "
        "AND c.status IN ('ok', 'in_flight'))", (run_id,)) or 0)


def endpoint_stats(store: Store, tally: LedgerTally,
                   config: Config | None = None) -> list[EndpointFigures]:
    """Per (model, endpoint) figures of the tally's run, ordered by model and endpoint."""
    stats = []
    run_id = tally.run_id
    for (model, endpoint), (in_flight, done, errors, throttles, tokens_out) in sorted(
            tally.counts(store).items()):
        latencies = sorted(r[0] for r in store.query(
            "SELECT latency_ms FROM llm_calls WHERE run_id = ? AND model = ? AND endpoint = ? "
            "AND status = 'ok' ORDER BY id DESC LIMIT ?",
            (run_id, model, endpoint, _LATENCY_WINDOW)))
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
        stats.append(EndpointFigures(str(model), str(endpoint), in_flight, done, errors, throttles,
                                     percentile(latencies, 0.5) or 0.0,
                                     percentile(latencies, 0.95) or 0.0,
                                     tokens_out, health, None, instances))
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
            "SELECT j.generation_id, p.idx, j.score FROM judgements j "
            "JOIN pairs p ON p.id = j.pair_id "
            f"WHERE j.generation_id IN ({marks}) ORDER BY j.id", recent):
        scores.setdefault(int(gid), {})[int(idx)] = score
    ids = [g for g in recent if g in heads][:limit]
    questions = first_questions(store, ids)
    threshold = threshold_of(store, 7.0)
    marks = ",".join("?" * len(ids))
    kept = {int(r[0]): int(r[1]) for r in store.query(
        f"SELECT generation_id, SUM({kept_sql(':threshold')}) FROM pair_state "
        f"WHERE generation_id IN ({','.join(f':g{n}' for n in range(len(ids)))}) "
        "GROUP BY generation_id",
        {"threshold": threshold, **{f"g{n}": g for n, g in enumerate(ids)}})} if ids else {}
    return [JudgedSample(g, heads[g][0], heads[g][1],
                         tuple(v for _, v in sorted(scores.get(g, {}).items())),
                         questions.get(g, ""), kept.get(g, 0))
            for g in ids]


def last_judgement_id(store: Store) -> int:
    return int(store.scalar("SELECT COALESCE(MAX(id), 0) FROM judgements") or 0)


def score_counts(store: Store, threshold: float, after_id: int = 0,
                 upto_id: int | None = None) -> ScoreCounts:
    """Judge scores of run conversations (rounded to whole buckets) in judgements after `after_id`
    and up to `upto_id` (default: the latest)."""
    last = last_judgement_id(store) if upto_id is None else upto_id
    if after_id == 0 and upto_id is None:
        return current_scores(store, threshold, last)
    if last <= after_id:
        return ScoreCounts(after_id, threshold=threshold)
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
    return ScoreCounts(last, dict(buckets), kept, threshold)


def current_scores(store: Store, threshold: float, last_id: int) -> ScoreCounts:
    """The current pairs' scores and kept count, by the verdict rules every door uses.

    Judged pairs go in buckets 1-10 by score, pairs with no readable score in bucket 0
    (gated and short-answer pairs in none); kept counts human accepts and short answers too.
    Read from the pair tally (a few rows, and the rows written since it last took them in)
    where the store keeps one, else from the pairs.
    """
    cols, count, source = ((TALLY_COLUMNS, "n", TALLIED) if has_tally(store.reader())
                           else (PAIR_STATE, "1", "pair_state"))
    buckets: Counter[int] = Counter()
    kept = 0
    # One pass: bucket -1 holds pairs with no score that counts (gated, short answers).
    for bucket, pairs, kept_here in store.query(
            f"SELECT CASE WHEN {judged_sql(cols)} "
            f"THEN MAX(1, MIN(10, CAST(ROUND({cols.score}) AS INTEGER))) "
            f"WHEN {verdict_sql(':threshold', cols)} = 'unjudged' THEN 0 ELSE -1 END, "
            f"SUM({count}), SUM({count} * {kept_sql(':threshold', cols)}) FROM {source} "
            f"GROUP BY 1", {"threshold": threshold}):
        if bucket >= 0 and pairs:
            buckets[int(bucket)] += int(pairs)
        kept += int(kept_here or 0)
    return ScoreCounts(last_id, dict(buckets), kept, threshold)


def run_cost(store: Store, threshold: float) -> CostReport:
    """What the store's runs cost so far and projected, priced with the models the last run used."""
    return cost_report(store, stored_config(store, threshold))


class StoreReader:
    """Reads what the monitor shows from one store; running tallies make every read cheap (the
    ledger's and units' count only what was written since, the pairs' is a few rows), so a
    poll stays cheap on a store of any size."""

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self._run_id: int | None = None
        self._ledger: LedgerTally | None = None
        self._units: UnitTally | None = None

    def snapshot(self, *, with_cost: bool = True, samples: int = 20,
                 errors: int = 50) -> StoreSnapshot:
        """Everything the monitor shows; scores are all of them the first time, then new ones."""
        store = self.store
        threshold = threshold_of(store, self.config.judge.threshold)
        priced = stored_config(store, threshold) if store.get_meta("models") else self.config
        run = latest_run(store)
        if run is None:
            progress = RunProgress(None, "none", None, None, 0, 0, 0)
            endpoints: list[EndpointFigures] = []
        else:
            run_id, status, started, finished, total, model, message, start_done = run
            if run_id != self._run_id or self._ledger is None or self._units is None:
                self._run_id, self._ledger, self._units = (run_id, LedgerTally(run_id),
                                                           UnitTally(model))
            failed = failed_units(store, run_id)
            done = self._units.count(store) + failed
            pid = store.scalar("SELECT pid FROM runs WHERE id = ?", (run_id,))
            progress = RunProgress(run_id, status, started, finished, total,
                                   min(total, done) if total else done, failed, model, message,
                                   int(pid) if pid else None, start_done,
                                   # From the call tally: a few rows, not the ledger.
                                   pictures_sent(store, run_id))
            endpoints = endpoint_stats(store, self._ledger, priced)
        # Counted afresh each time from the pair tally: a few rows, whatever the store's size.
        scores = score_counts(store, threshold)
        return StoreSnapshot(
            progress=progress,
            endpoints=tuple(endpoints),
            in_flight=tuple(in_flight_calls(store)),
            errors=tuple(recent_errors(store, errors)),
            samples=tuple(latest_samples(store, samples)),
            scores=scores,
            threshold=threshold,
            full_scores=True,
            # Kept pairs and done units as the monitor counts them: no scan of the store.
            cost=cost_report(store, priced, kept_pairs=scores.kept,
                             done_units=progress.done_units or None) if with_cost else None,
            batch_jobs=tuple(batch_job_rows(store)),
        )


def take_snapshot(store: Store, config: Config, *, with_cost: bool = True) -> StoreSnapshot:
    """One full read of what the monitor shows."""
    return StoreReader(store, config).snapshot(with_cost=with_cost)
