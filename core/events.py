"""The events a run emits, each after the rows it describes are committed."""

from __future__ import annotations

import dataclasses
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    """Base of every event; `kind` is the class name, used in JSON lines."""

    @property
    def kind(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with the event's kind first."""
        return {"event": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class RunStarted(Event):
    run_id: int
    total_units: int
    done_units: int
    images: int
    tasks: tuple[str, ...]
    generation_model: str
    judge_model: str


@dataclass(frozen=True)
class CallIdentity:
    """Which call attempt: its ledger row, the work it does, and where and how often it went.

    Call events and the monitor's in-flight lanes carry these fields first, in this order.
    """

    call_id: int
    stage: str
    image_id: int
    task: str
    model: str
    endpoint: str
    attempt: int


@dataclass(frozen=True)
class CallStarted(CallIdentity, Event):
    """A call's `in_flight` row was committed; its request is going out."""


@dataclass(frozen=True)
class CallFinished(CallIdentity, Event):
    """A call attempt's row was finished, as ok or as an error."""

    status: str          # ok | error
    latency_ms: float
    tokens_in: int
    tokens_out: int
    error_kind: str = ""
    error_class: str = ""
    error: str = ""
    pictures: int = 0    # pictures the request carried


@dataclass(frozen=True)
class GenerationParsed(Event):
    generation_id: int
    image_id: int
    task: str
    pairs: int
    parse_failure: bool
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class PairsJudged(Event):
    generation_id: int
    image_id: int
    task: str
    scores: tuple[float | None, ...]
    kept: int
    threshold: float


@dataclass(frozen=True)
class PictureUnusable(Event):
    """An image's picture cannot be sent to a model that sees: its units fail, no call made."""

    image_id: int
    path: str
    problem: str


@dataclass(frozen=True)
class ImageDone(Event):
    """One (image, task) unit finished, successfully or not."""

    image_id: int
    task: str
    ok: bool
    done_units: int
    total_units: int


@dataclass(frozen=True)
class EndpointFigures:
    """One endpoint's figures: the pool's live view, or the ledger's for a followed store.

    `limit` and `ceiling` are the pool's in-flight limits, None when only the store is known.
    """

    model: str
    endpoint: str
    in_flight: int
    done: int
    errors: int
    throttles: int
    p50_ms: float
    p95_ms: float
    tokens_out: int
    health: str                  # healthy | degraded | down
    limit: int | None = None
    instances: int = 1
    ceiling: int | None = None


@dataclass(frozen=True)
class EndpointHealth(EndpointFigures, Event):
    """An endpoint's figures changed (the pool reports them as calls finish)."""


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-th quantile (0..1) of ascending values, interpolating between ranks; None if empty."""
    if not sorted_values:
        return None
    position = (len(sorted_values) - 1) * q
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return float(sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low))


@dataclass(frozen=True)
class CostUpdated(Event):
    cost_usd: float
    cost_per_kept_pair_usd: float | None
    projected_cost_usd: float | None


@dataclass(frozen=True)
class RunFinished(Event):
    run_id: int
    status: str          # finished | interrupted | budget | failed
    done_units: int
    total_units: int
    failed_units: int
    pairs: int
    kept_pairs: int
    parse_failures: int
    calls: int
    failed_calls: int
    elapsed_s: float
    cost_usd: float
    dropped_pairs: int = 0   # dropped by a gate, the judge or a person (store/verdicts.py)
    error: str = ""      # why the run failed, when status is "failed"


Emit = Callable[[Event], None]


def ignore(event: Event) -> None:
    """An emit that drops every event."""


_CLOSE = object()
# Past this many undelivered events, periodic snapshots (each superseded by the next) are
# dropped rather than queued behind a stalled listener.
_BACKLOG = 10_000
_SNAPSHOTS = (EndpointHealth, CostUpdated)
_GATHER_S = 0.005


class Dispatcher:
    """An emit that queues events for one thread of its own, which hands them to `listener`.

    Whoever emits (the store's writer after a commit, a worker) never waits for the listener,
    so a slow display cannot delay a commit. An exception in the listener is reported on
    stderr once, then counted; the events after it are still delivered.
    """

    def __init__(self, listener: Emit, *, name: str = "event-dispatcher") -> None:
        self.listener = listener
        self.failures = 0
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._deliver, name=name, daemon=True)
        self._closed = False
        self._drained = False
        self._lock = threading.RLock()  # a listener may emit during a drain
        self._thread.start()

    def __call__(self, event: Event) -> None:
        # No lock on the common path: the store's writer emits here after every commit, and
        # waiting for a lock that a worker holds would cost it a trip through the GIL.
        queued = False
        if not self._closed:
            if isinstance(event, _SNAPSHOTS) and self._queue.qsize() > _BACKLOG:
                return  # far behind: a newer snapshot will follow; memory stays bounded
            self._queue.put(event)
            if not self._closed:
                return
            queued = True  # close() began meanwhile: the event may sit behind _CLOSE
        with self._lock:
            if not self._drained:
                if not queued:
                    self._queue.put(event)
                return  # the thread's last drain delivers it, in order
            # A late event (a straggling commit after the run) goes straight through.
            if queued:
                self._drain()
            else:
                self._call(event)

    def _deliver(self) -> None:
        while True:
            event = self._queue.get()
            while True:
                if event is _CLOSE:
                    with self._lock:
                        # Events queued behind _CLOSE by emitters that saw it still open.
                        self._drained = True
                        self._drain()
                    return
                self._call(event)  # type: ignore[arg-type]
                try:
                    event = self._queue.get_nowait()
                except queue.Empty:
                    break
            # Let a burst gather: one wake-up per batch, not one thread switch per event,
            # keeps this thread from taking the interpreter from the writer and the workers.
            time.sleep(_GATHER_S)

    def _call(self, event: Event) -> None:
        try:
            self.listener(event)
        except Exception as exc:  # noqa: BLE001 - reported once, never silently
            self.failures += 1
            if self.failures == 1:
                self._report(event, exc)

    def _report(self, event: Event, exc: Exception) -> None:
        from visinstruct.core.sanitize.redact import redact

        where = traceback.extract_tb(exc.__traceback__)[-1:]
        place = f" ({where[0].filename}:{where[0].lineno})" if where else ""
        try:
            print(redact(f"visinstruct: an event listener failed on {event.kind}: "
                         f"{type(exc).__name__}: {exc}{place}; later failures are not shown"),
                  file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass  # stderr is gone too: nothing left to tell

    def close(self) -> None:
        """Deliver every queued event, then stop the thread (safe to call twice)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_CLOSE)
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _drain(self) -> None:
        """Deliver what is left in the queue (under the lock, once _CLOSE is reached)."""
        while True:
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                return
            if event is not _CLOSE:
                self._call(event)  # type: ignore[arg-type]


@dataclass(frozen=True)
class EvaluationStarted(Event):
    """An evaluation against the baseline began; `done_verdicts` were stored by earlier runs."""

    mode: str
    model: str
    images: int
    units: int
    total_verdicts: int
    done_verdicts: int


@dataclass(frozen=True)
class VerdictRecorded(Event):
    """One evaluator verdict (one order of one compared item) was stored."""

    image_id: int
    task: str
    mode: str
    item: int
    shown_first: str     # ours | baseline
    parsed: bool
    ours_score: float | None
    baseline_score: float | None
    done_verdicts: int
    total_verdicts: int


@dataclass(frozen=True)
class EvaluationNotice(Event):
    """Something the user should know about an evaluation that is not an error."""

    message: str


@dataclass(frozen=True)
class EvaluationFinished(Event):
    status: str          # finished | interrupted
    mode: str
    verdicts: int
    unparsed: int
    failed_calls: int
    missing_images: int
    relative_score: float | None


@dataclass(frozen=True)
class BatchJobUpdated(Event):
    """A Bedrock batch job was submitted, changed status, or had its output read."""

    arn: str
    job_id: str
    stage: str
    model: str
    records: int
    status: str          # Bedrock's: Submitted, InProgress, Completed, Failed, Stopped, ...
    submitted_at: float
    message: str = ""
    ok_records: int = 0
    error_records: int = 0


@dataclass(frozen=True)
class BatchRecordsWaiting(Event):
    """Fewer records than a batch job's minimum are pending and may not go on demand."""

    stage: str
    model: str
    records: int
    min_records: int


@dataclass(frozen=True)
class BatchNotice(Event):
    """Something about a batch stage the user must know: a job that could not be submitted,
    or one that ended without all its records."""

    stage: str
    model: str
    message: str
