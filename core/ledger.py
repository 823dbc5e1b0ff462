"""The `llm_calls` ledger: every attempt is written `in_flight` before it is sent and finished after."""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
import threading
from dataclasses import dataclass

from visinstruct.core.backends.base import CompletionRequest, CompletionResponse
from visinstruct.core.errors import BackendError
from visinstruct.core.events import CallFinished, CallStarted, Emit
from visinstruct.core.store import Store, now

MAX_RAW = 200_000  # characters of a raw response kept; far above any real answer


def call_key(stage: str, image_id: int, task: str, prompt_version: str, model: str,
             item: str = "") -> str:
    """The idempotency key of a unit of model work; the same work always has the same key."""
    return "|".join((stage, str(image_id), task, prompt_version, model, item))


def request_hash(request: CompletionRequest) -> str:
    """A hash of everything sent, so identical requests are recognisable in the ledger."""
    body = json.dumps({
        "messages": [[m.role, m.content, len(m.images)] for m in request.messages],
        "max_tokens": request.max_tokens, "temperature": request.temperature,
        "top_p": request.top_p, "stop": list(request.stop), "schema": request.json_schema,
    }, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CallInfo:
    """What a ledger row says about the work it belongs to."""

    stage: str
    image_id: int
    task: str
    model: str
    prompt_version: str
    key: str
    request_hash: str


class Ledger:
    """Allocates call ids and writes call rows through the store's writer."""

    def __init__(self, store: Store, run_id: int, emit: Emit) -> None:
        self.store = store
        self.run_id = run_id
        self.emit = emit
        start = store.scalar("SELECT COALESCE(MAX(id), 0) FROM llm_calls") or 0
        self._ids = itertools.count(int(start) + 1)
        self._lock = threading.Lock()

    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def listener(self, info: CallInfo) -> "CallListener":
        """An AttemptListener for one unit of work."""
        return CallListener(self, info)

    def finish_ok(self, conn: sqlite3.Connection, call_id: int, response: CompletionResponse,
                  latency_ms: float) -> None:
        """Mark a call finished; run inside the same write as the result it produced."""
        conn.execute(
            "UPDATE llm_calls SET status = 'ok', latency_ms = ?, tokens_in = ?, tokens_out = ?, "
            "endpoint = COALESCE(endpoint, ?), raw_response = ?, finished_at = ? WHERE id = ?",
            (latency_ms, response.tokens_in, response.tokens_out, response.endpoint,
             response.text[:MAX_RAW], now(), call_id))

    def finished_event(self, info: CallInfo, call_id: int, response: CompletionResponse,
                       latency_ms: float, attempt: int) -> CallFinished:
        """The event for a successful call."""
        return CallFinished(call_id, info.stage, info.image_id, info.task, info.model,
                            response.endpoint, attempt, "ok", latency_ms, response.tokens_in,
                            response.tokens_out)


class CallListener:
    """Writes the ledger rows of each attempt of one unit of work."""

    def __init__(self, ledger: Ledger, info: CallInfo) -> None:
        self.ledger = ledger
        self.info = info
        self.attempts: dict[int, int] = {}

    def started(self, endpoint: str, attempt: int) -> int:
        """Write the `in_flight` row (queued before the request goes out) and return its id."""
        call_id = self.ledger._next_id()
        self.attempts[call_id] = attempt
        info = self.info
        ledger = self.ledger
        row = (call_id, info.key, ledger.run_id, info.image_id, info.task, info.stage, info.model,
               endpoint, info.prompt_version, info.request_hash, attempt, now())
        event = CallStarted(call_id, info.stage, info.image_id, info.task, info.model, endpoint,
                            attempt)
        ledger.store.write(
            lambda c: c.execute(
                "INSERT INTO llm_calls (id, key, run_id, image_id, task, stage, model, endpoint, "
                "prompt_version, request_hash, attempt, status, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'in_flight', ?)", row),
            on_commit=lambda _: ledger.emit(event))
        return call_id

    def failed(self, call_id: int, error: BackendError, latency_ms: float, will_retry: bool) -> None:
        """Finish the attempt's row as an error, keeping the error text."""
        info = self.info
        ledger = self.ledger
        message = str(error)[:2000]
        event = CallFinished(call_id, info.stage, info.image_id, info.task, info.model, "",
                             self.attempts.get(call_id, 1), "error", latency_ms, 0, 0, error.kind,
                             error.error_class, message)
        ledger.store.write(
            lambda c: c.execute(
                "UPDATE llm_calls SET status = 'error', latency_ms = ?, error_kind = ?, "
                "error_class = ?, error = ?, finished_at = ? WHERE id = ?",
                (latency_ms, error.kind, error.error_class, message, now(), call_id)),
            on_commit=lambda _: ledger.emit(event))


def abandon_in_flight(store: Store) -> int:
    """Mark calls that never finished (a crash or kill) as abandoned; their work is sent again."""
    def work(conn: sqlite3.Connection) -> int:
        cursor = conn.execute(
            "UPDATE llm_calls SET status = 'abandoned', finished_at = ? WHERE status = 'in_flight'",
            (now(),))
        return cursor.rowcount
    result: int = store.write_sync(work)
    return result
