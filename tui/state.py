"""What the monitor shows, kept up to date from pipeline events or from store snapshots."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace

from visinstruct.core.events import (
    BatchJobUpdated,
    CallFinished,
    CallStarted,
    EndpointFigures,
    EndpointHealth,
    Event,
    PairsJudged,
    RunFinished,
    RunStarted,
)
from visinstruct.core.pipeline.tally import ACTIVE, RunFigures, RunTally
from visinstruct.core.records import RunState as StoredRunState
from visinstruct.core.store.snapshots import (
    CallError,
    InFlightCall,
    JudgedSample,
    ScoreCounts,
    StoreSnapshot,
)

MAX_ERRORS = 50
MAX_SAMPLES = 20
LATENCY_WINDOW = 512
# Seconds of history behind "tokens per second" (units and calls: the shared RunTally).
RATE_WINDOW = 30.0


@dataclass(frozen=True)
class Rate:
    """Units per second over the recent window, and the seconds left at that pace."""

    per_second: float | None
    eta_seconds: float | None


def _tally_field(name: str) -> property:
    """A RunState attribute that lives in its RunTally, so the app and the CLI count alike."""
    return property(lambda self: getattr(self.tally, name),
                    lambda self, value: setattr(self.tally, name, value))


class EndpointTally:
    """Running figures of one endpoint: counted from call events, or set from a store read."""

    def __init__(self, model: str, endpoint: str, instances: int = 1) -> None:
        self.model = model
        self.endpoint = endpoint
        self.instances = instances
        self.done = 0
        self.errors = 0
        self.throttles = 0
        self.tokens_out = 0
        self.failures_in_a_row = 0
        self.latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.limit: int | None = None
        self.health = ""
        self.stored: EndpointFigures | None = None   # set when the figures come from the store

    def call_finished(self, event: CallFinished) -> None:
        if event.status == "ok":
            self.done += 1
            self.tokens_out += event.tokens_out
            self.latencies.append(event.latency_ms)
            self.failures_in_a_row = 0
        elif event.error_kind == "backpressure":
            self.throttles += 1
        else:
            self.errors += 1
            self.failures_in_a_row += 1

    def stats(self, in_flight: int) -> EndpointFigures:
        """The row the endpoint table shows."""
        if self.stored is not None:
            return replace(self.stored, instances=self.instances)
        ordered = sorted(self.latencies)
        p50 = ordered[len(ordered) // 2] if ordered else 0.0
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] if ordered else 0.0
        health = self.health or ("degraded" if self.failures_in_a_row else "healthy")
        return EndpointFigures(self.model, self.endpoint, in_flight, self.done, self.errors,
                             self.throttles, p50, p95, self.tokens_out, health, self.limit,
                             self.instances)


class RunState:
    """The app-level picture of the run; the UI thread alone mutates it."""

    run_id = _tally_field("run_id")
    status = _tally_field("status")   # none | starting | running | paused | stopping | finished ...
    total_units = _tally_field("total_units")
    done_units = _tally_field("done_units")
    failed_units = _tally_field("failed_units")
    start_done = _tally_field("start_done")
    started_at = _tally_field("started_at")
    finished_at = _tally_field("finished_at")
    cost_usd = _tally_field("cost_usd")
    projected_cost_usd = _tally_field("projected_cost_usd")
    cost_per_kept_pair_usd = _tally_field("cost_per_kept_pair_usd")

    def __init__(self, threshold: float = 7.0) -> None:
        self.version = 0
        self.tally = RunTally()          # units, run pairs, calls, rates, ETA: shared with the CLI
        self.source = "store"            # store: read from the store | live: a run in this app
        self.message = ""
        self.threshold = threshold
        self.score_buckets: dict[int, int] = {}
        self.judged_pairs = 0
        self.kept_pairs = 0
        # Scores that arrived as events in this app's run, kept apart so that a store read
        # of the scores before it can be added under them whenever it arrives.
        self._live_buckets: dict[int, int] = {}
        self._live_kept = 0
        self.endpoints: dict[tuple[str, str], EndpointTally] = {}
        self.lanes: dict[int, InFlightCall] = {}
        self.errors: deque[CallError] = deque(maxlen=MAX_ERRORS)
        self.samples: deque[JudgedSample] = deque(maxlen=MAX_SAMPLES)
        self.instances: dict[str, int] = {}  # instances behind each endpoint, per model
        self.batch_jobs: dict[str, BatchJobUpdated] = {}  # Bedrock batch jobs by ARN
        self.events_absorbed = 0
        self.pid: int | None = None      # the process writing the followed run
        self._token_marks: dict[tuple[str, str], deque[tuple[float, int]]] = {}

    # -- derived figures ---------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """A run is going (in this app or, when following, in another process)."""
        return self.status in ACTIVE

    @property
    def keep_rate(self) -> float | None:
        return self.kept_pairs / self.judged_pairs if self.judged_pairs else None

    def elapsed(self, now: float) -> float | None:
        return self.tally.elapsed(now)

    def figures(self, now: float) -> RunFigures:
        """The run's figures from the shared tally (what the headless progress shows too)."""
        return self.tally.figures(now)

    def rate(self, now: float) -> Rate:
        """Units per second: over the recent window while running, the run's average once ended."""
        figures = self.tally.figures(now)
        return Rate(figures.units_per_s, figures.eta_s)

    def tokens_per_second(self, key: tuple[str, str], now: float) -> float | None:
        """Output tokens per second: recent while running, the run's average once it ended."""
        if not self.active:
            elapsed = self.elapsed(now)
            tally = self.endpoints.get(key)
            if not elapsed or tally is None or not tally.tokens_out:
                return None
            return tally.tokens_out / elapsed
        marks = self._token_marks.get(key)
        if not marks or len(marks) < 2 or marks[-1][0] <= marks[0][0]:
            return None
        return (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0])

    def endpoint_rows(self) -> list[tuple[tuple[str, str], EndpointFigures]]:
        """(model, endpoint) and the figures of each endpoint, in name order."""
        in_flight: dict[tuple[str, str], int] = {}
        for lane in self.lanes.values():
            key = (lane.model, lane.endpoint)
            in_flight[key] = in_flight.get(key, 0) + 1
        return [(key, tally.stats(in_flight.get(key, 0)))
                for key, tally in sorted(self.endpoints.items())]

    def _tally(self, model: str, endpoint: str) -> EndpointTally:
        key = (model, endpoint)
        tally = self.endpoints.get(key)
        if tally is None:
            tally = self.endpoints[key] = EndpointTally(model, endpoint,
                                                        self.instances.get(model, 1))
        return tally

    def _changed(self) -> None:
        self.version += 1

    def _mark_tokens(self, key: tuple[str, str], tokens_out: int, now: float) -> None:
        marks = self._token_marks.setdefault(key, deque())
        marks.append((now, tokens_out))
        while len(marks) > 2 and now - marks[0][0] > RATE_WINDOW:
            marks.popleft()

    # -- a run in this app -------------------------------------------------------------------
    def run_requested(self) -> None:
        """The user started a run; events will follow."""
        self.source = "live"
        self.status = "starting"
        self.message = ""
        self._live_buckets.clear()
        self._live_kept = 0
        self._changed()

    def writer_gone(self) -> None:
        """No process holds the writer lock: a stored run that says it goes was killed."""
        self.set_status(StoredRunState.as_it_stands(self.status, writer_alive=False) or "none")

    def set_status(self, status: str) -> None:
        if status != self.status:
            self.status = status
            self._changed()

    def apply_events(self, events: Iterable[Event], now: float) -> int:
        """Absorb a batch of pipeline events; returns how many there were."""
        count = 0
        touched: set[tuple[str, str]] = set()
        tally = self.tally
        for event in events:
            count += 1
            tally.add(event, now)  # units, run pairs, calls, cost, rates: the shared figures
            if isinstance(event, CallStarted):
                self.lanes[event.call_id] = InFlightCall(
                    event.call_id, event.stage, event.image_id, event.task, event.model,
                    event.endpoint, event.attempt, now)
            elif isinstance(event, CallFinished):
                touched.add(self._call_finished(event, now))
            elif isinstance(event, PairsJudged):
                self._pairs_judged(event)
            elif isinstance(event, EndpointHealth):
                self._endpoint_health(event, now)
            elif isinstance(event, BatchJobUpdated):
                self.batch_jobs[event.arn] = event
            elif isinstance(event, RunStarted):
                self.source = "live"
                self.endpoints.clear()
                self.lanes.clear()
                self._token_marks.clear()
            elif isinstance(event, RunFinished):
                self.lanes.clear()
        if count:
            self.events_absorbed += count
            for key in touched:
                if key in self.endpoints:
                    self._mark_tokens(key, self.endpoints[key].tokens_out, now)
            self._changed()
        return count

    def _call_finished(self, event: CallFinished, now: float) -> tuple[str, str]:
        lane = self.lanes.pop(event.call_id, None)
        # A failed attempt's event names no endpoint; the lane that sent it does.
        endpoint = event.endpoint or (lane.endpoint if lane else "")
        self._tally(event.model, endpoint).call_finished(event)
        if event.status == "ok":
            return (event.model, endpoint)
        self.errors.appendleft(CallError(
            event.call_id, now, event.stage, event.image_id, event.task, event.model, endpoint,
            event.error_kind, event.error_class, event.error))
        return (event.model, endpoint)

    def _pairs_judged(self, event: PairsJudged) -> None:
        for score in event.scores:
            bucket = 0 if score is None else max(0, min(10, round(score)))
            self.score_buckets[bucket] = self.score_buckets.get(bucket, 0) + 1
            self._live_buckets[bucket] = self._live_buckets.get(bucket, 0) + 1
        self.judged_pairs += sum(score is not None for score in event.scores)
        self.kept_pairs += event.kept
        self._live_kept += event.kept
        self.threshold = event.threshold
        self.samples.appendleft(JudgedSample(event.generation_id, event.image_id, event.task,
                                             tuple(event.scores)))

    def _endpoint_health(self, event: EndpointHealth, now: float) -> None:
        # Counts come from call events (health events are sampled); the pool knows the rest.
        tally = self._tally(event.model, event.endpoint)
        tally.limit = event.limit
        tally.health = event.health

    def fill_questions(self, questions: dict[int, str]) -> None:
        """Attach first questions (looked up in the store) to the samples that lack them."""
        if not questions:
            return
        self.samples = deque((replace(s, question=questions.get(s.generation_id, s.question))
                              for s in self.samples), maxlen=MAX_SAMPLES)
        self._changed()

    # -- a store read (at start, before a run, and when following another process) ------------
    def apply_scores(self, scores: ScoreCounts, *, full: bool, changed: bool = True) -> None:
        """Judge scores read from the store: all of them (`full`), or only new ones to add."""
        if full:
            # Scores that arrived as events while the store was read stay counted on top.
            self.score_buckets = dict(scores.buckets)
            for bucket, count in self._live_buckets.items():
                self.score_buckets[bucket] = self.score_buckets.get(bucket, 0) + count
            self.judged_pairs = scores.judged + sum(
                n for bucket, n in self._live_buckets.items() if bucket > 0)
            self.kept_pairs = scores.kept + self._live_kept
        else:
            for bucket, count in scores.buckets.items():
                self.score_buckets[bucket] = self.score_buckets.get(bucket, 0) + count
            self.judged_pairs += scores.judged
            self.kept_pairs += scores.kept
        if changed:
            self._changed()

    def apply_snapshot(self, snapshot: StoreSnapshot, now: float, *, follow: bool) -> None:
        """Take the store's view; `follow` also takes progress, lanes and endpoints from it."""
        progress = snapshot.progress
        if follow:
            self._live_buckets.clear()
            self._live_kept = 0
            if progress.run_id != self.run_id:
                self._token_marks.clear()
            self.tally.restore(progress.run_id, progress.status, progress.total_units,
                               progress.done_units, progress.failed_units, progress.started_at,
                               progress.finished_at, now, start_done=progress.start_done,
                               pictures_sent=progress.pictures_sent)
            self.message = progress.message
            self.pid = progress.pid
            self.endpoints = {}
            for stats in snapshot.endpoints:
                key = (stats.model, stats.endpoint)
                tally = self._tally(stats.model, stats.endpoint)
                tally.stored = stats
                tally.tokens_out = stats.tokens_out
                if progress.status == "running":
                    self._mark_tokens(key, stats.tokens_out, now)
            self.lanes = {call.call_id: call for call in snapshot.in_flight}
            self.errors = deque(snapshot.errors, maxlen=MAX_ERRORS)
            self.samples = deque(snapshot.samples, maxlen=MAX_SAMPLES)
        if snapshot.batch_jobs:
            self.batch_jobs = {job.arn: job for job in snapshot.batch_jobs}
        self.threshold = snapshot.threshold
        self.apply_scores(snapshot.scores, full=snapshot.full_scores, changed=False)
        if snapshot.cost is not None:
            self.cost_usd = snapshot.cost.cost_usd
            self.projected_cost_usd = snapshot.cost.projected_cost_usd
            self.cost_per_kept_pair_usd = snapshot.cost.cost_per_kept_pair_usd
        self._changed()
