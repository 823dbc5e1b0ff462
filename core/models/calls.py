"""What every stage needs to make calls: the store, the ledger, the pools and where events go."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable

from visinstruct.core.models.backends import make_backend
from visinstruct.core.models.backends.base import Backend, CompletionRequest
from visinstruct.core.config import Config
from visinstruct.core.errors import BackendError
from visinstruct.core.events import Emit
from visinstruct.core.models.ledger import CallInfo, Ledger, call_key, request_hash
from visinstruct.core.events import EndpointFigures
from visinstruct.core.models.pool import Cancelled, Pool, PoolResult
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
                    request_hash(request))
    listener = ctx.ledger.listener(info)
    try:
        result = ctx.pools[model].call(request, listener)
    except Cancelled:
        return CallOutcome(info, None, cancelled=True)
    except BackendError as error:
        return CallOutcome(info, None, error)
    return CallOutcome(info, result)


def emit_after(ctx: StageContext, events: Callable[[], list]) -> Callable[[object], None]:
    """An on_commit callback that emits the events `events()` builds."""
    def fire(_: object) -> None:
        for event in events():
            ctx.emit(event)
    return fire
