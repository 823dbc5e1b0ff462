"""The endpoint pool: adaptive limits, retries by error class, failover, and probing a dead
endpoint."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from visinstruct.core.errors import BackendError
from visinstruct.core.models.backends.base import CompletionRequest, CompletionResponse, Message
from visinstruct.core.models.pool import MAX_PUSH_BACKS, Pool

REQUEST = CompletionRequest(messages=(Message("user", "hi"),))


class Recorder:
    """An AttemptListener that remembers every attempt."""

    def __init__(self) -> None:
        self.started: list[tuple[str, int]] = []
        self.failed: list[tuple[str, bool]] = []
        self._lock = threading.Lock()

    def started_(self, endpoint: str, attempt: int) -> int:
        with self._lock:
            self.started.append((endpoint, attempt))
            return len(self.started)

    def failed_(self, call_id: int, error: BackendError, latency_ms: float,
                will_retry: bool) -> None:
        with self._lock:
            self.failed.append((error.kind, will_retry))


class Listener:
    def __init__(self, recorder: Recorder) -> None:
        self.r = recorder

    def started(self, endpoint: str, attempt: int) -> int:
        return self.r.started_(endpoint, attempt)

    def failed(self, call_id: int, error: BackendError, latency_ms: float,
               will_retry: bool) -> None:
        self.r.failed_(call_id, error, latency_ms, will_retry)


class FakeBackend:
    """Endpoints that behave as `behave(endpoint, n)` says; tracks concurrency per endpoint."""

    def __init__(self, endpoints: tuple[str, ...],
                 behave: Callable[[str, int], str] = lambda e, n: "ok",
                 gate: threading.Event | None = None) -> None:
        self.name = "fake"
        self.endpoints = endpoints
        self.behave = behave
        self.gate = gate
        self.calls: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self._lock = threading.Lock()

    def complete(self, request: CompletionRequest,
                 endpoint: str | None = None) -> CompletionResponse:
        assert endpoint is not None
        with self._lock:
            self.calls[endpoint] += 1
            n = self.calls[endpoint]
            self.in_flight[endpoint] += 1
            self.peak[endpoint] = max(self.peak[endpoint], self.in_flight[endpoint])
        try:
            if self.gate is not None:
                self.gate.wait(5)
            outcome = self.behave(endpoint, n)
            if outcome != "ok":
                raise BackendError(f"{outcome} from {endpoint}", kind=outcome,
                                   error_class=outcome.title())
            return CompletionResponse(text="fine", tokens_out=3, endpoint=endpoint)
        finally:
            with self._lock:
                self.in_flight[endpoint] -= 1

    def close(self) -> None:
        pass


def make_pool(backend: FakeBackend, **kwargs: object) -> Pool:
    options: dict[str, object] = {"model": "m", "max_in_flight": 8, "attempts": 3,
                                  "sleep": lambda s: None}
    options.update(kwargs)
    return Pool(backend, **options)  # type: ignore[arg-type]


def test_success_grows_the_limit_up_to_the_ceiling() -> None:
    backend = FakeBackend(("a",))
    pool = make_pool(backend, max_in_flight=6, initial_in_flight=1)
    for _ in range(40):
        pool.call(REQUEST, Listener(Recorder()))
    snap = pool.snapshots()[0]
    assert snap.limit == 6 and snap.ceiling == 6 and snap.done == 40


def test_backpressure_halves_the_limit_and_is_retried_without_using_attempts() -> None:
    backend = FakeBackend(("a",), lambda e, n: "backpressure" if n <= 4 else "ok")
    pool = make_pool(backend, max_in_flight=16, initial_in_flight=16, attempts=2)
    recorder = Recorder()
    result = pool.call(REQUEST, Listener(recorder))
    assert result.response.text == "fine"
    assert backend.calls["a"] == 5  # four throttles did not exhaust two attempts
    snap = pool.snapshots()[0]
    assert snap.throttles == 4
    # Halved four times (16 -> 1), then one success completes a window of one and adds one.
    assert snap.limit == 2
    assert all(retry for kind, retry in recorder.failed)


def test_transient_errors_fail_over_and_stop_after_the_attempts() -> None:
    backend = FakeBackend(("a", "b"), lambda e, n: "transient" if e == "a" else "ok")
    pool = make_pool(backend, attempts=3)
    recorder = Recorder()
    # Whichever endpoint goes first, a failure on "a" moves the retry to "b".
    for _ in range(6):
        pool.call(REQUEST, Listener(recorder))
    retried = [e for e, attempt in recorder.started if attempt == 2]
    assert retried and all(e == "b" for e in retried)

    always_failing = FakeBackend(("a",), lambda e, n: "transient")
    pool = make_pool(always_failing, attempts=3, failures_to_down=100)
    with pytest.raises(BackendError) as info:
        pool.call(REQUEST, Listener(Recorder()))
    assert info.value.kind == "transient"
    assert always_failing.calls["a"] == 3


def test_permanent_errors_are_not_retried() -> None:
    backend = FakeBackend(("a", "b"), lambda e, n: "permanent")
    pool = make_pool(backend, attempts=5)
    recorder = Recorder()
    with pytest.raises(BackendError):
        pool.call(REQUEST, Listener(recorder))
    assert sum(backend.calls.values()) == 1
    assert recorder.failed == [("permanent", False)]


def test_a_failing_endpoint_leaves_rotation_and_is_probed_back() -> None:
    dead = {"b": True}
    backend = FakeBackend(("a", "b"),
                          lambda e, n: "transient" if e == "b" and dead["b"] else "ok")
    pool = make_pool(backend, attempts=4, failures_to_down=2, probe_after=0.0)
    pool.probe_after = 3600.0  # once down, stay down for this test's lifetime
    for _ in range(20):
        pool.call(REQUEST, Listener(Recorder()))
    by_name = {s.endpoint: s for s in pool.snapshots()}
    assert by_name["b"].health == "down"
    calls_to_b = backend.calls["b"]
    for _ in range(20):
        pool.call(REQUEST, Listener(Recorder()))
    assert backend.calls["b"] == calls_to_b  # out of rotation: nothing more was sent to it

    # The endpoint comes back: after the quiet time, one probe succeeds and it rejoins.
    dead["b"] = False
    for endpoint in pool._endpoints:
        endpoint.down_until = 0.0
    for _ in range(20):
        pool.call(REQUEST, Listener(Recorder()))
    assert backend.calls["b"] > calls_to_b
    assert {s.endpoint: s for s in pool.snapshots()}["b"].health == "healthy"


def test_in_flight_never_exceeds_the_limit_and_spreads_over_endpoints() -> None:
    gate = threading.Event()
    backend = FakeBackend(("a", "b"), gate=gate)
    pool = make_pool(backend, max_in_flight=3, initial_in_flight=3)
    with ThreadPoolExecutor(max_workers=12) as executor:
        futures = [executor.submit(pool.call, REQUEST, Listener(Recorder())) for _ in range(30)]
        # Wait until both endpoints are full, then let everything through.
        while sum(backend.in_flight.values()) < 6:
            threading.Event().wait(0.005)
        assert backend.in_flight["a"] == 3 and backend.in_flight["b"] == 3
        gate.set()
        for future in futures:
            future.result(timeout=10)
    assert backend.peak["a"] <= 3 and backend.peak["b"] <= 3


def test_cancel_wakes_callers_waiting_for_a_slot() -> None:
    from visinstruct.core.models.pool import Cancelled

    gate = threading.Event()
    backend = FakeBackend(("a",), gate=gate)
    cancel = threading.Event()
    pool = make_pool(backend, max_in_flight=1, initial_in_flight=1, cancel=cancel)
    with ThreadPoolExecutor(max_workers=2) as executor:
        first = executor.submit(pool.call, REQUEST, Listener(Recorder()))
        while backend.in_flight["a"] < 1:
            threading.Event().wait(0.005)
        second = executor.submit(pool.call, REQUEST, Listener(Recorder()))
        cancel.set()
        with pytest.raises(Cancelled):
            second.result(timeout=5)
        gate.set()
        assert first.result(timeout=5).response.text == "fine"


def test_a_burst_of_push_back_halves_the_limit_once() -> None:
    gate = threading.Event()
    # The first eight requests (all sent at limit 8) are throttled; their retries succeed.
    backend = FakeBackend(("a",), lambda e, n: "backpressure" if n <= 8 else "ok", gate=gate)
    pool = make_pool(backend, max_in_flight=8, initial_in_flight=8)
    with ThreadPoolExecutor(max_workers=8) as executor:
        futures = [executor.submit(pool.call, REQUEST, Listener(Recorder())) for _ in range(8)]
        while backend.in_flight["a"] < 8:
            threading.Event().wait(0.005)
        gate.set()  # all eight were sent at limit 8 and are now throttled together
        for future in futures:
            future.result(timeout=10)
    snap = pool.snapshots()[0]
    assert snap.throttles == 8
    assert pool._endpoints[0].cuts == 1  # one cut for the burst, not eight


def test_a_call_that_only_meets_push_back_gives_up_after_a_bounded_count_and_says_so() -> None:
    backend = FakeBackend(("a",), lambda e, n: "backpressure")
    pool = make_pool(backend, attempts=2)
    recorder = Recorder()
    with pytest.raises(BackendError) as caught:
        pool.call(REQUEST, Listener(recorder))
    assert backend.calls["a"] == MAX_PUSH_BACKS == len(recorder.started)
    assert caught.value.kind == BackendError.BACKPRESSURE
    assert f"gave up after {MAX_PUSH_BACKS} push-backs" in str(caught.value)
    assert recorder.failed[-1] == (BackendError.BACKPRESSURE, False)
    assert all(retry for _, retry in recorder.failed[:-1])


def test_a_call_that_only_meets_push_back_gives_up_after_a_bounded_time() -> None:
    backend = FakeBackend(("a",), lambda e, n: "backpressure")
    pool = make_pool(backend, push_back_seconds=0.2, sleep=lambda s: threading.Event().wait(0.05))
    # The seconds are what the clock said (about 0.2 here; more on a loaded machine).
    with pytest.raises(BackendError, match=r"gave up after \d+ push-backs in \d+ s"):
        pool.call(REQUEST, Listener(Recorder()))
    assert 2 <= backend.calls["a"] < MAX_PUSH_BACKS
