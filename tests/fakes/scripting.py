"""Scripted behaviour shared by the loopback fakes: what to answer, per endpoint, per request."""

from __future__ import annotations

import json
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ANY_ENDPOINT = "*"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it; `number` counts from 1 per endpoint."""

    endpoint: str
    operation: str
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    json: Any
    number: int = 0


@dataclass(frozen=True)
class Reply:
    """Answer with `text` (or text computed from the request) after `latency_s`.

    Token counts default to word counts; `stream_chunk_bytes` > 0 cuts a streamed reply into
    frames of that many bytes, so JSON lines straddle frames.
    """

    text: str | Callable[[RecordedRequest], str] = "ok"
    latency_s: float = 0.0
    finish_reason: str = "stop"
    tokens_in: int | None = None
    tokens_out: int | None = None
    stream_chunk_bytes: int = 0

    def text_for(self, request: RecordedRequest) -> str:
        """The reply text for this request."""
        return self.text(request) if callable(self.text) else self.text

    def tokens_out_for(self, text: str) -> int:
        """Output tokens to report."""
        return self.tokens_out if self.tokens_out is not None else len(text.split())


@dataclass(frozen=True)
class Throttle:
    """Refuse with the throttling error (SageMaker: 400 ThrottlingException; elsewhere HTTP 429)."""

    latency_s: float = 0.0


@dataclass(frozen=True)
class Fail:
    """Fail with an error class named as the service names it (ModelError, ValidationError, ...).

    `status` overrides the class's usual HTTP status; `original_status` is the container status
    inside a SageMaker ModelError.
    """

    error_class: str
    message: str | None = "scripted failure"
    status: int | None = None
    original_status: int | None = None
    latency_s: float = 0.0


@dataclass(frozen=True)
class ResetMidBody:
    """Send the headers and half of a normal reply's body, then close the connection."""

    text: str = "this reply is cut in the middle of its body"
    latency_s: float = 0.0


@dataclass(frozen=True)
class Malformed:
    """Answer 200 with a body that is not valid JSON."""

    body: bytes = b'[{"generated_text": "unterminated'
    latency_s: float = 0.0


@dataclass(frozen=True)
class Hang:
    """Say nothing for `seconds` (longer than the client's read timeout), then close."""

    seconds: float = 30.0


@dataclass(frozen=True)
class StreamError:
    """Stream the first `parts_before` frames of `text`, then a ModelStreamError event."""

    text: str = "a streamed reply that breaks"
    parts_before: int = 2
    error_code: str = "ModelInvocationTimeExceeded"
    message: str = "the model stopped streaming"


Behaviour = Reply | Throttle | Fail | ResetMidBody | Malformed | Hang | StreamError
BehaviourSource = Callable[[RecordedRequest], Behaviour | None]


@dataclass(frozen=True)
class Dead:
    """Shorthand for `requests` copies of `failure` in a queue: dead for N requests, then alive."""

    requests: int
    failure: Behaviour = field(default_factory=lambda: Fail("ServiceUnavailable"))


@dataclass(frozen=True)
class Capacity:
    """Each endpoint has `instances` x `per_instance` serving slots plus `queue` waiting places.

    Latency grows with the serving instance's load: base * (1 + (busy - 1) / per_instance).
    Requests beyond slots plus queue are throttled.
    """

    instances: int = 1
    per_instance: int = 4
    base_latency_s: float = 0.05
    queue: int = 0

    @property
    def slots(self) -> int:
        """Requests an endpoint serves at once."""
        return self.instances * self.per_instance


class _CapacityGate:
    """Admits, queues or throttles requests per endpoint according to a Capacity."""

    def __init__(self, capacity: Capacity, stopping: threading.Event) -> None:
        self.capacity = capacity
        self._stopping = stopping
        self._changed = threading.Condition()
        self._busy: dict[str, list[int]] = {}
        self._waiting: dict[str, int] = defaultdict(int)
        self.throttled: dict[str, int] = defaultdict(int)

    def enter(self, endpoint: str) -> tuple[int, float] | None:
        """Wait for a slot and return (instance, latency), or None when the request is throttled."""
        capacity = self.capacity
        with self._changed:
            busy = self._busy.setdefault(endpoint, [0] * capacity.instances)
            if sum(busy) + self._waiting[endpoint] >= capacity.slots + capacity.queue:
                self.throttled[endpoint] += 1
                return None
            self._waiting[endpoint] += 1
            try:
                while min(busy) >= capacity.per_instance and not self._stopping.is_set():
                    self._changed.wait()
            finally:
                self._waiting[endpoint] -= 1
            instance = busy.index(min(busy))
            busy[instance] += 1
            load = (busy[instance] - 1) / capacity.per_instance
            return instance, capacity.base_latency_s * (1 + load)

    def leave(self, endpoint: str, instance: int) -> None:
        """Free the slot taken by enter()."""
        with self._changed:
            self._busy[endpoint][instance] -= 1
            self._changed.notify_all()

    def wake_all(self) -> None:
        """Release queued requests when the server stops."""
        with self._changed:
            self._changed.notify_all()


class Script:
    """Per-endpoint queues and callables of behaviours, with a default; records every request.

    Lookup order: the endpoint's queue, the "*" queue, the endpoint's callable, the "*"
    callable (a callable may return None to pass), then `default`. One script serves one server.
    """

    def __init__(
        self, default: Behaviour | None = None, *, capacity: Capacity | None = None
    ) -> None:
        self.default: Behaviour = default if default is not None else Reply()
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Behaviour]] = defaultdict(deque)
        self._sources: dict[str, BehaviourSource] = {}
        self._requests: list[RecordedRequest] = []
        self._counts: dict[str, int] = defaultdict(int)
        self._in_flight: dict[str, int] = defaultdict(int)
        self._peak: dict[str, int] = defaultdict(int)
        self.gate = _CapacityGate(capacity, self.stopping) if capacity else None

    def push(self, endpoint: str, *behaviours: Behaviour | Dead) -> Script:
        """Queue behaviours for the next requests to `endpoint` ("*" for any endpoint)."""
        with self._lock:
            for behaviour in behaviours:
                if isinstance(behaviour, Dead):
                    self._queues[endpoint].extend([behaviour.failure] * behaviour.requests)
                else:
                    self._queues[endpoint].append(behaviour)
        return self

    def on(self, endpoint: str, source: BehaviourSource) -> Script:
        """Decide each request to `endpoint` ("*" for any) with `source` once its queue is empty."""
        with self._lock:
            self._sources[endpoint] = source
        return self

    def record(self, request: RecordedRequest) -> RecordedRequest:
        """Record and count a request without choosing a behaviour; returns it numbered."""
        with self._lock:
            self._counts[request.endpoint] += 1
            numbered = RecordedRequest(
                request.endpoint, request.operation, request.method, request.path,
                request.headers, request.body, request.json, self._counts[request.endpoint],
            )
            self._requests.append(numbered)
            return numbered

    def choose(self, request: RecordedRequest) -> Behaviour:
        """The behaviour for a recorded request (consumes a queued one if any)."""
        with self._lock:
            for key in (request.endpoint, ANY_ENDPOINT):
                if self._queues[key]:
                    return self._queues[key].popleft()
            sources = [self._sources.get(key) for key in (request.endpoint, ANY_ENDPOINT)]
        for source in sources:
            if source is not None:
                chosen = source(request)
                if chosen is not None:
                    return chosen
        return self.default

    def take(self, request: RecordedRequest) -> tuple[RecordedRequest, Behaviour]:
        """Record the request and return it numbered with the behaviour to perform."""
        numbered = self.record(request)
        return numbered, self.choose(numbered)

    def enter(self, endpoint: str) -> None:
        """Note a request in flight (for peak concurrency)."""
        with self._lock:
            self._in_flight[endpoint] += 1
            self._peak[endpoint] = max(self._peak[endpoint], self._in_flight[endpoint])

    def leave(self, endpoint: str) -> None:
        """Note a request finished."""
        with self._lock:
            self._in_flight[endpoint] -= 1

    def requests(self, endpoint: str | None = None) -> list[RecordedRequest]:
        """Requests received so far, oldest first, for one endpoint or all."""
        with self._lock:
            return [r for r in self._requests if endpoint is None or r.endpoint == endpoint]

    def bodies(self, endpoint: str | None = None) -> list[Any]:
        """The decoded JSON bodies received so far."""
        return [r.json for r in self.requests(endpoint)]

    def count(self, endpoint: str | None = None) -> int:
        """How many requests reached the server (for one endpoint or all)."""
        with self._lock:
            if endpoint is None:
                return sum(self._counts.values())
            return self._counts[endpoint]

    def peak_in_flight(self, endpoint: str | None = None) -> int:
        """The most requests in flight at once at one endpoint (or the highest over all)."""
        with self._lock:
            if endpoint is None:
                return max(self._peak.values(), default=0)
            return self._peak[endpoint]

    def throttled(self, endpoint: str) -> int:
        """Requests the capacity model refused at `endpoint`."""
        return self.gate.throttled[endpoint] if self.gate else 0

    def stop(self) -> None:
        """Cut every latency, hang and queue wait short (the server is stopping)."""
        self.stopping.set()
        if self.gate:
            self.gate.wake_all()

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Script:
        """A script from JSON data: {"default": B, "endpoints": {name: [B, ...]}, "capacity": {}}.

        B is {"reply": "text"} or {"reply": {...Reply fields}}, {"throttle": {}}, {"fail": {...}},
        {"reset": {}}, {"malformed": {}}, {"hang": {"seconds": 5}}, {"stream_error": {}} or
        {"dead": {"requests": 3, "failure": B}}.
        """
        capacity = Capacity(**spec["capacity"]) if spec.get("capacity") else None
        default = behaviour_from_dict(spec["default"]) if spec.get("default") else None
        if isinstance(default, Dead):
            raise TypeError("the default behaviour cannot be dead: it answers every request")
        script = cls(default, capacity=capacity)
        for endpoint, items in (spec.get("endpoints") or {}).items():
            script.push(endpoint, *(behaviour_from_dict(item) for item in items))
        return script

    @classmethod
    def from_file(cls, path: str | Path) -> Script:
        """Build a script from a JSON file in the from_dict() format."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


_KINDS: dict[str, Callable[..., Any]] = {
    "reply": Reply, "throttle": Throttle, "fail": Fail, "reset": ResetMidBody,
    "malformed": Malformed, "hang": Hang, "stream_error": StreamError,
}


def behaviour_from_dict(spec: Mapping[str, Any]) -> Behaviour | Dead:
    """One behaviour from its JSON form, e.g. {"fail": {"error_class": "ModelError"}}."""
    if len(spec) != 1:
        raise ValueError(f"a behaviour has exactly one key, got {sorted(spec)}")
    (kind, arguments), = spec.items()
    if kind == "dead":
        failure = arguments.get("failure")
        made = behaviour_from_dict(failure) if failure else Fail("ServiceUnavailable")
        if isinstance(made, Dead):
            raise ValueError("a dead behaviour cannot fail with another dead behaviour")
        return Dead(int(arguments["requests"]), made)
    if kind not in _KINDS:
        known = ", ".join(sorted(_KINDS))
        raise ValueError(f"unknown behaviour {kind!r}; use one of {known}, dead")
    if kind == "reply" and isinstance(arguments, str):
        return Reply(arguments)
    if kind == "malformed" and isinstance(arguments.get("body"), str):
        arguments = {**arguments, "body": arguments["body"].encode("utf-8")}
    made_behaviour: Behaviour = _KINDS[kind](**(arguments or {}))
    return made_behaviour
