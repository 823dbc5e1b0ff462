"""Endpoint pool: adaptive in-flight limits per endpoint, retries with backoff, failover, probes."""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from visinstruct.core.errors import BackendError
from visinstruct.core.events import EndpointFigures, percentile
from visinstruct.core.models.backends.base import Backend, CompletionRequest, CompletionResponse

# How one attempt ended, as the endpoint's limit and health see it.
PoolOutcome = Literal["ok", "backpressure", "transient", "permanent"]

HEALTHY, DEGRADED, DOWN = "healthy", "degraded", "down"
# Push-back is waited out, but not forever: a call gives up after this many push-backs or
# this long since the first, whichever comes first, and fails saying so.
MAX_PUSH_BACKS = 50
PUSH_BACK_SECONDS = 600.0


class AttemptListener(Protocol):
    """Told about every attempt, so the ledger records each one."""

    def started(self, endpoint: str, attempt: int) -> Any:
        """An attempt is about to be sent; returns the ledger's reference to its row."""
        ...

    def failed(self, call_id: Any, error: BackendError, latency_ms: float,
               will_retry: bool) -> None:
        """The attempt failed; `will_retry` says whether the pool tries again."""
        ...


@dataclass(frozen=True)
class PoolResult:
    """A successful call: the response, the ledger id of the attempt that made it, its latency."""

    response: CompletionResponse
    call_id: Any          # the ledger's reference to the attempt's row (a RowRef)
    latency_ms: float
    attempt: int


class _Endpoint:
    def __init__(self, name: str, ceiling: int, initial: int) -> None:
        self.name = name
        self.ceiling = ceiling
        self.limit = float(initial)
        self.slow_start = True
        self.last_cut_from = 0.0   # the limit when back-pressure last cut it
        self.cuts = 0              # how many cuts so far: one burst of push-back cuts once
        self.in_flight = 0
        self.successes = 0
        self.consecutive_failures = 0
        self.down_until = 0.0
        self.probing = False
        self.done = 0
        self.errors = 0
        self.throttles = 0
        self.tokens_out = 0
        self.latencies: deque[float] = deque(maxlen=512)
        self.reported_at = 0.0
        self.reported_health = HEALTHY

    def health(self, now: float) -> str:
        if self.down_until > now:
            return DOWN
        return DEGRADED if self.consecutive_failures else HEALTHY


def _gave_up(error: BackendError, push_backs: int, seconds: float) -> BackendError:
    """The last push-back of a call that stops waiting, saying so (its unit fails)."""
    return BackendError(f"{error.message}; gave up after {push_backs} push-backs in "
                        f"{seconds:.0f} s", kind=error.kind, error_class=error.error_class,
                        status=error.status)


def unexpected_error(error: BaseException) -> BackendError:
    """An exception that is not a BackendError as a permanent failed call with its class."""
    if isinstance(error, BackendError):
        return error
    name = type(error).__name__
    text = str(error)
    return BackendError(f"{name}: {text[:500]}" if text else name,
                        kind=BackendError.PERMANENT, error_class=name)


class Cancelled(Exception):
    """The run was cancelled while waiting for a free slot."""


class Pool:
    """Spreads calls over a backend's endpoints, keeping each as busy as it will take."""

    def __init__(
        self,
        backend: Backend,
        *,
        model: str,
        max_in_flight: int,
        attempts: int = 4,
        initial_in_flight: int | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        failures_to_down: int = 5,
        probe_after: float = 30.0,
        cancel: threading.Event | None = None,
        on_health: Callable[[EndpointFigures], None] | None = None,
        health_interval: float = 0.25,
        sleep: Callable[[float], None] | None = None,
        push_back_seconds: float | None = None,
    ) -> None:
        self.backend = backend
        self.push_back_seconds = PUSH_BACK_SECONDS if push_back_seconds is None \
            else push_back_seconds
        self.model = model
        self.attempts = attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.failures_to_down = failures_to_down
        self.probe_after = probe_after
        self.cancel = cancel or threading.Event()
        self.on_health = on_health
        self.health_interval = health_interval
        initial = initial_in_flight or max(1, min(max_in_flight, 4))
        self._endpoints = [_Endpoint(name, max_in_flight, initial) for name in backend.endpoints]
        self._cond = threading.Condition()
        self._rr = 0
        self._sleep = sleep or self._interruptible_sleep

    @property
    def ceiling(self) -> int:
        """The most calls this pool will ever have in flight at once."""
        return sum(e.ceiling for e in self._endpoints)

    def snapshots(self) -> list[EndpointFigures]:
        """The current state of every endpoint."""
        with self._cond:
            return [self._snapshot(e) for e in self._endpoints]

    def _snapshot(self, e: _Endpoint) -> EndpointFigures:
        lat = sorted(e.latencies)
        return EndpointFigures(
            model=self.model, endpoint=e.name, in_flight=e.in_flight, done=e.done,
            errors=e.errors, throttles=e.throttles, p50_ms=percentile(lat, 0.5) or 0.0,
            p95_ms=percentile(lat, 0.95) or 0.0, tokens_out=e.tokens_out,
            health=e.health(time.monotonic()), limit=int(e.limit), ceiling=e.ceiling)

    # -- slots -------------------------------------------------------------------------------
    def _acquire(self, avoid: str | None) -> tuple[_Endpoint, int]:
        with self._cond:
            while True:
                if self.cancel.is_set():
                    raise Cancelled()
                now = time.monotonic()
                chosen = self._choose(now, avoid)
                if chosen is not None:
                    chosen.in_flight += 1
                    return chosen, chosen.cuts
                wake = min((e.down_until for e in self._endpoints if e.down_until > now),
                           default=now + 0.5)
                self._cond.wait(timeout=max(0.01, min(0.5, wake - now)))

    def _choose(self, now: float, avoid: str | None) -> _Endpoint | None:
        up = [e for e in self._endpoints if e.down_until <= now
              and e.in_flight < (1 if e.probing else int(e.limit))]
        if avoid is not None and len(up) > 1:
            up = [e for e in up if e.name != avoid] or up
        if len(up) <= 1:
            return up[0] if up else None
        # Fewest outstanding first; rotate among ties so equal endpoints share the load evenly.
        self._rr = (self._rr + 1) % len(self._endpoints)
        n = len(self._endpoints)
        return min(up, key=lambda e: (e.in_flight, (self._endpoints.index(e) - self._rr) % n))

    def _unclaim(self, e: _Endpoint) -> None:
        with self._cond:
            e.in_flight -= 1
            self._cond.notify()

    def _release(self, e: _Endpoint, outcome: PoolOutcome, latency_ms: float, tokens_out: int = 0,
                 sent_at_cut: int = -1) -> None:
        with self._cond:
            e.in_flight -= 1
            now = time.monotonic()
            if outcome == "ok":
                e.done += 1
                e.tokens_out += tokens_out
                e.latencies.append(latency_ms)
                e.consecutive_failures = 0
                e.probing = False
                e.down_until = 0.0
                e.limit = max(e.limit, 1.0)
                e.successes += 1
                # Grow by one per success while well below the level that last drew push-back
                # (slow start, fast recovery), then by one per window of successes, probing
                # gently near the endpoint's capacity (additive increase).
                fast = e.slow_start or e.limit < 0.9 * e.last_cut_from
                window = 1 if fast else max(1, int(e.limit))
                if e.successes >= window and e.limit < e.ceiling:
                    e.limit = min(float(e.ceiling), e.limit + 1)
                    e.successes = 0
            elif outcome == BackendError.BACKPRESSURE:
                e.throttles += 1
                e.slow_start = False
                e.successes = 0
                # Halve once per burst: push-back on requests sent before the last cut was
                # caused by the old limit and must not cut the new one again.
                if sent_at_cut < 0 or sent_at_cut == e.cuts:
                    e.last_cut_from = e.limit
                    e.limit = max(1.0, e.limit / 2)
                    e.cuts += 1
            else:
                e.errors += 1
                e.successes = 0
                if outcome == BackendError.TRANSIENT:
                    e.consecutive_failures += 1
                    if e.consecutive_failures >= self.failures_to_down or e.probing:
                        # Out of rotation; after the quiet time a single probe request may go.
                        e.down_until = now + self.probe_after
                        e.probing = True
            # A snapshot sorts the latency window: take one only when it will be reported,
            # at most every `health_interval` per endpoint (and always on a change of health).
            snap = None
            health = e.health(now)
            if self.on_health is not None and (now - e.reported_at >= self.health_interval
                                               or health != e.reported_health):
                e.reported_at, e.reported_health = now, health
                snap = self._snapshot(e)
            self._cond.notify(2)  # a freed slot, and maybe one more from a grown limit
        if snap is not None and self.on_health is not None:
            self.on_health(snap)

    # -- calling ------------------------------------------------------------------------------
    def call(self, request: CompletionRequest, listener: AttemptListener) -> PoolResult:
        """Send `request`, retrying transient errors and back-pressure; raise the last error."""
        last_endpoint: str | None = None
        attempt = 0
        backpressure_waits = 0
        first_push_back: float | None = None
        while True:
            attempt += 1
            endpoint, cuts = self._acquire(avoid=last_endpoint)
            try:
                call_id = listener.started(endpoint.name, attempt)
            except BaseException:
                self._unclaim(endpoint)  # never sent: free the slot, count nothing
                raise
            started = time.monotonic()
            try:
                response = self.backend.complete(request, endpoint.name)
            except BackendError as error:
                latency = (time.monotonic() - started) * 1000
                self._release(endpoint, error.kind, latency, sent_at_cut=cuts)
                retry = self._should_retry(error, attempt, backpressure_waits)
                if error.kind == BackendError.BACKPRESSURE and not self.cancel.is_set():
                    first_push_back = first_push_back or started
                    waited = time.monotonic() - first_push_back
                    retry = retry and waited < self.push_back_seconds
                    if not retry:
                        error = _gave_up(error, backpressure_waits + 1, waited)
                listener.failed(call_id, error, latency, retry)
                if not retry:
                    raise error
                if error.kind == BackendError.BACKPRESSURE:
                    # Push-back is not a failure of the request: it does not use up attempts.
                    backpressure_waits += 1
                    attempt -= 1
                last_endpoint = endpoint.name
                if error.kind != BackendError.BACKPRESSURE:
                    self._sleep(self._backoff(attempt))
                else:  # never past the time push-back is waited out for
                    left = self.push_back_seconds - (time.monotonic() - (first_push_back or 0))
                    self._sleep(max(0.0, min(left, self._backoff(min(backpressure_waits, 6)))))
                continue
            except BaseException as unexpected:
                # Not a classified failure (a bug, RecursionError on a deep reply, an interrupt):
                # the attempt still ends in the ledger, as a permanent error naming its class.
                latency = (time.monotonic() - started) * 1000
                self._release(endpoint, BackendError.TRANSIENT, latency)
                failure = unexpected_error(unexpected)
                listener.failed(call_id, failure, latency, False)
                if isinstance(unexpected, Exception):
                    raise failure from unexpected
                raise
            latency = (time.monotonic() - started) * 1000
            self._release(endpoint, "ok", latency, response.tokens_out)
            if not response.endpoint:
                response = CompletionResponse(
                    text=response.text, finish_reason=response.finish_reason,
                    tokens_in=response.tokens_in, tokens_out=response.tokens_out,
                    endpoint=endpoint.name, raw=response.raw, extra=response.extra)
            return PoolResult(response, call_id, latency, attempt)

    def _should_retry(self, error: BackendError, attempt: int, backpressure_waits: int) -> bool:
        if self.cancel.is_set():
            return False
        if error.kind == BackendError.PERMANENT:
            return False
        if error.kind == BackendError.BACKPRESSURE:
            return backpressure_waits + 1 < MAX_PUSH_BACKS
        return attempt < self.attempts

    def _backoff(self, attempt: int) -> float:
        # Full jitter: spreads retries so throttled callers do not come back in step.
        return random.uniform(0, min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1))))

    def _interruptible_sleep(self, seconds: float) -> None:
        self.cancel.wait(seconds)
