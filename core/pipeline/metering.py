"""A run's money while it runs: the budget check and the periodic cost event."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from visinstruct.core.config import Config
from visinstruct.core.events import CostUpdated, Emit
from visinstruct.core.store.cost import CostMeter
from visinstruct.core.store.database import Store

if TYPE_CHECKING:
    from visinstruct.core.pipeline.runner import _Runner


def monitor_costs(runner: _Runner, config: Config, store: Store, meter: CostMeter, emit: Emit,
             finished: threading.Event) -> None:
    """Twice a second: the budget (instance-hours grow with time); every 2 s the cost event."""
    ticks = 0
    while not finished.wait(0.5):
        check_budget(runner, config, meter)
        ticks += 1
        if ticks % 4 == 0:
            emit(cost_event(runner, store, config, meter))


def cost_event(runner: _Runner, store: Store, config: Config, meter: CostMeter) -> CostUpdated:
    spent = meter.total_usd()
    images = int(store.scalar("SELECT COUNT(*) FROM images") or 0)
    done = runner.done_units - runner.failed_units
    per_kept = spent / runner.kept_pairs if runner.kept_pairs else None
    # The projection is for the whole source, whatever --limit this run has.
    projected = spent / done * images * len(config.generation.tasks) if done else None
    return CostUpdated(round(spent, 6), round(per_kept, 6) if per_kept is not None else None,
                       round(projected, 4) if projected is not None else None)


def check_budget(runner: _Runner, config: Config, meter: CostMeter) -> None:
    limit = config.budget.max_usd
    if limit and not runner.budget_hit and meter.total_usd() >= limit:
        runner.budget_hit = True
        runner.cancel.set()
