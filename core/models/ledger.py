"""The `llm_calls` ledger: each attempt is written `in_flight` before it is sent, finished after."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from visinstruct.core.errors import BackendError
from visinstruct.core.events import CallFinished, CallStarted, Emit
from visinstruct.core.models.backends.base import CompletionRequest, CompletionResponse
from visinstruct.core.sanitize.clean import storable
from visinstruct.core.sanitize.redact import redact
from visinstruct.core.store.database import RowRef, Store, now

MAX_RAW = 200_000  # characters of a raw response kept; far above any real answer
MAX_ERROR = 2000


def error_text(error: BaseException) -> str:
    """An error's message as the ledger keeps it: valid Unicode, no secrets, bounded."""
    return redact(storable(str(error)))[:MAX_ERROR]


def call_key(stage: str, image_id: int, task: str, prompt_version: str, model: str,
             item: str = "") -> str:
    """The idempotency key of a unit of model work; the same work always has the same key."""
    return "|".join((stage, str(image_id), task, prompt_version, model, item))


def picture_count(request: CompletionRequest) -> int:
    """How many pictures a request carries."""
    return sum(len(message.images) for message in request.messages)


def request_hash(request: CompletionRequest) -> str:
    """A hash of everything sent, so identical requests are recognisable in the ledger."""
    digest = hashlib.blake2b(digest_size=8)
    for message in request.messages:
        digest.update(f"{message.role}\x00{len(message.images)}\x00".encode())
        digest.update(message.content.encode("utf-8", "surrogatepass"))  # any text hashes
        digest.update(b"\x01")
    digest.update(repr((request.max_tokens, request.temperature, request.top_p, request.stop,
                        _schema_text(request.json_schema))).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


_SCHEMA_TEXT: dict[int, tuple[Any, str]] = {}


def _schema_text(schema: Any) -> str:
    """The schema as canonical JSON, remembered per object (schemas are module constants)."""
    if schema is None:
        return ""
    cached = _SCHEMA_TEXT.get(id(schema))
    if cached is None or cached[0] is not schema:
        cached = (schema, json.dumps(schema, sort_keys=True))
        _SCHEMA_TEXT[id(schema)] = cached
    return cached[1]


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
    pictures: int = 0   # pictures the request carries (0: the model did not see the image)


class Ledger:
    """Writes call rows through the store's writer; nobody waits for those writes to commit."""

    def __init__(self, store: Store, run_id: int | None, emit: Emit) -> None:
        self.store = store
        self.run_id = run_id
        self.emit = emit

    def listener(self, info: CallInfo) -> CallListener:
        """An AttemptListener for one unit of work."""
        return CallListener(self, info)

    def finish_ok(self, conn: sqlite3.Connection, call: RowRef | int, response: CompletionResponse,
                  latency_ms: float) -> None:
        """Mark a call finished; run inside the same write as the result it produced."""
        conn.execute(
            "UPDATE llm_calls SET status = 'ok', latency_ms = ?, tokens_in = ?, tokens_out = ?, "
            "endpoint = COALESCE(endpoint, ?), raw_response = ?, finished_at = ? WHERE id = ?",
            (latency_ms, response.tokens_in, response.tokens_out, response.endpoint,
             storable(response.text[:MAX_RAW]), now(), _id(call)))

    def finish_error(self, conn: sqlite3.Connection, call: RowRef | int, error: BackendError,
                     latency_ms: float) -> str:
        """Mark a call failed (inside a write); returns the error text it stored."""
        message = error_text(error)
        conn.execute(
            "UPDATE llm_calls SET status = 'error', latency_ms = ?, error_kind = ?, "
            "error_class = ?, error = ?, finished_at = ? WHERE id = ?",
            (latency_ms, error.kind, error.error_class, message, now(), _id(call)))
        return message

    def error_event(self, info: CallInfo, call: RowRef | int, endpoint: str, attempt: int,
                    error: BackendError, latency_ms: float) -> CallFinished:
        """The event for a failed call (build it after the commit: the id is known then)."""
        return CallFinished(_id(call) or 0, info.stage, info.image_id, info.task, info.model,
                            endpoint, attempt, "error", latency_ms, 0, 0, error.kind,
                            error.error_class, error_text(error))

    def finished_event(self, info: CallInfo, call: RowRef | int, response: CompletionResponse,
                       latency_ms: float, attempt: int) -> CallFinished:
        """The event for a successful call (build it after the commit: the id is known then)."""
        return CallFinished(_id(call) or 0, info.stage, info.image_id, info.task, info.model,
                            response.endpoint, attempt, "ok", latency_ms, response.tokens_in,
                            response.tokens_out, pictures=info.pictures)


def _id(call: RowRef | int) -> int | None:
    return call.id if isinstance(call, RowRef) else call


class CallListener:
    """Writes the ledger rows of each attempt of one unit of work."""

    def __init__(self, ledger: Ledger, info: CallInfo) -> None:
        self.ledger = ledger
        self.info = info
        self._sent: dict[int, tuple[str, int]] = {}

    def started(self, endpoint: str, attempt: int) -> RowRef:
        """Queue the `in_flight` row before the request goes out; its id arrives with the write."""
        ref = RowRef()
        self._sent[id(ref)] = (endpoint, attempt)
        info = self.info
        ledger = self.ledger
        row = (info.key, ledger.run_id, info.image_id, info.task, info.stage, info.model,
               endpoint, info.prompt_version, info.request_hash, attempt, info.pictures, now())

        def insert(conn: sqlite3.Connection) -> None:
            ref.id = conn.execute(
                "INSERT INTO llm_calls (key, run_id, image_id, task, stage, model, endpoint, "
                "prompt_version, request_hash, attempt, pictures, status, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'in_flight', ?)", row).lastrowid

        ledger.store.write_nowait(insert, on_commit=lambda _: ledger.emit(CallStarted(
            ref.id or 0, info.stage, info.image_id, info.task, info.model, endpoint, attempt)))
        return ref

    def failed(self, call: RowRef, error: BackendError, latency_ms: float,
               will_retry: bool) -> None:
        """Finish the attempt's row as an error, keeping the error text (redacted)."""
        info = self.info
        ledger = self.ledger
        endpoint, attempt = self._sent.get(id(call), ("", 0))
        ledger.store.write_nowait(
            lambda c: ledger.finish_error(c, call, error, latency_ms),
            on_commit=lambda _: ledger.emit(
                ledger.error_event(info, call, endpoint, attempt, error, latency_ms)))


def abandon_in_flight(store: Store, stages: tuple[str, ...] = ()) -> int:
    """Mark calls that never finished (a crash or kill) as abandoned; their work is sent again.

    With `stages`, only those stages' calls: evaluate leaves a stopped run's calls to its resume.
    """
    where = f" AND stage IN ({','.join('?' * len(stages))})" if stages else ""

    def work(conn: sqlite3.Connection) -> int:
        cursor = conn.execute(
            f"UPDATE llm_calls SET status = 'abandoned', finished_at = ? "
            f"WHERE status = 'in_flight'{where}", (now(), *stages))
        return cursor.rowcount
    result: int = store.write_sync(work)
    return result
