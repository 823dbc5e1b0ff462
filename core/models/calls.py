"""What every stage needs to make calls: the store, the ledger, the pools and where events go."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

from visinstruct.core.config import Config
from visinstruct.core.errors import BackendError
from visinstruct.core.events import Emit, EndpointFigures
from visinstruct.core.models.backends import make_backend
from visinstruct.core.models.backends.base import Backend, CompletionRequest
from visinstruct.core.models.ledger import (
    CallInfo,
    Ledger,
    call_key,
    picture_count,
    request_hash,
)
from visinstruct.core.models.pool import Cancelled, Pool, PoolResult, unexpected_error
from visinstruct.core.sanitize.clean import storable
from visinstruct.core.sanitize.redact import redact_reply
from visinstruct.core.store.database import Store


def build_pools(config: Config, names: Iterable[str], cancel: threading.Event,
                on_health: Callable[[EndpointFigures], None] | None = None,
                ) -> tuple[dict[str, Backend], dict[str, Pool]]:
    """One backend and one endpoint pool per named model (a model named twice is built once)."""
    backends: dict[str, Backend] = {}
    pools: dict[str, Pool] = {}
    for name in dict.fromkeys(names):
        model = config.model(name)
        backends[name] = make_backend(model)
        pools[name] = Pool(backends[name], model=name, max_in_flight=model.max_in_flight,
                           attempts=model.attempts, cancel=cancel,
                           probe_after=model.probe_seconds, on_health=on_health)
    return backends, pools


@dataclass
class StageContext:
    """Shared by the stages of one run; `pools` maps model name to its endpoint pool."""

    store: Store
    ledger: Ledger
    pools: dict[str, Pool]
    emit: Emit
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class CallOutcome:
    """A finished call (`result`) or the error that ended it."""

    info: CallInfo
    result: PoolResult | None
    error: BackendError | None = None
    cancelled: bool = False


def make_call(ctx: StageContext, *, stage: str, image_id: int, task: str, model: str,
              prompt_version: str, request: CompletionRequest, item: str = "") -> CallOutcome:
    """Send one request through the model's pool with every attempt in the ledger."""
    info = CallInfo(stage, image_id, task, model, prompt_version,
                    call_key(stage, image_id, task, prompt_version, model, item),
                    request_hash(request), picture_count(request))
    listener = ctx.ledger.listener(info)
    try:
        result = ctx.pools[model].call(request, listener)
    except Cancelled:
        return CallOutcome(info, None, cancelled=True)
    except BackendError as error:
        return CallOutcome(info, None, error)
    except Exception as error:  # noqa: BLE001 - the pool has finished the attempt's row
        return CallOutcome(info, None, unexpected_error(error))
    return CallOutcome(info, storable_result(result))


def storable_result(result: PoolResult) -> PoolResult:
    """The result as every stage may keep it: its text valid Unicode (no write of it can fail
    on encoding) and without any secret the tool sent, in any form (a server may echo the
    request's headers inside a good reply: the ledger, the generation and the pairs made of it
    must not keep them)."""
    response = result.response
    text, raw = redact_reply(storable(response.text)), redact_reply(storable(response.raw))
    if text == response.text and raw == response.raw:
        return result
    return replace(result, response=replace(response, text=text, raw=raw))


@dataclass(frozen=True)
class NotStored:
    """What a result write resolves to when storing the result raised: the call failed instead."""

    error: BackendError


def fail_answered(ctx: StageContext, outcome: CallOutcome, exc: BaseException) -> CallOutcome:
    """Finish an answered call as failed because reading its reply raised; returns that outcome."""
    result = outcome.result
    assert result is not None
    error = unexpected_error(exc)
    ledger = ctx.ledger
    ctx.store.write_nowait(
        lambda conn: ledger.finish_error(conn, result.call_id, error, result.latency_ms),
        on_commit=lambda _: ctx.emit(ledger.error_event(
            outcome.info, result.call_id, result.response.endpoint, result.attempt, error,
            result.latency_ms)))
    return CallOutcome(outcome.info, None, error)


def store_result(ctx: StageContext, outcome: CallOutcome,
                 write: Callable[[sqlite3.Connection], Any],
                 committed: Callable[[Any], None]) -> Future[Any]:
    """Queue `write` (which stores an answered call's result and finishes its ledger row).

    Should it raise, its changes are undone and the call is finished as failed with the
    exception's class and message instead; the future then resolves to a NotStored.
    """
    result = outcome.result
    assert result is not None
    ledger = ctx.ledger

    def failed(conn: sqlite3.Connection, exc: Exception) -> NotStored:
        # The store has undone the write's changes; this runs in their place.
        error = unexpected_error(exc)
        ledger.finish_error(conn, result.call_id, error, result.latency_ms)
        return NotStored(error)

    def on_commit(value: Any) -> None:
        if isinstance(value, NotStored):
            ctx.emit(ledger.error_event(outcome.info, result.call_id, result.response.endpoint,
                                        result.attempt, value.error, result.latency_ms))
        else:
            committed(value)

    return ctx.store.write(write, on_commit=on_commit, on_error=failed)


def was_stored(written: Future[Any] | None) -> bool:
    """Wait for a result write; False when it failed and its call was marked failed instead."""
    if written is None:
        return True
    try:
        return not isinstance(written.result(), NotStored)
    except Exception:  # noqa: BLE001 - the store reported it (failed_writes)
        return False


def emit_after(ctx: StageContext, events: Callable[[], list]) -> Callable[[object], None]:
    """An on_commit callback that emits the events `events()` builds."""
    def fire(_: object) -> None:
        for event in events():
            ctx.emit(event)
    return fire
