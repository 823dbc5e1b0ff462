"""A run's money while it runs: the budget check and the periodic cost event."""

from __future__ import annotations

import threading

from visinstruct.core.config import Config
from visinstruct.core.events import CostUpdated, Emit
from visinstruct.core.pipeline.progress import Progress
from visinstruct.core.store.cost import CostMeter
from visinstruct.core.store.database import Store


def monitor_costs(progress: Progress, config: Config, store: Store, meter: CostMeter, emit: Emit,
                  finished: threading.Event) -> None:
    """Twice a second: the budget (instance-hours grow with time); every 2 s the cost event."""
    ticks = 0
    while not finished.wait(0.5):
        check_budget(progress, config, meter)
        ticks += 1
        if ticks % 4 == 0:
            emit(cost_event(progress, store, config, meter))


def cost_event(progress: Progress, store: Store, config: Config, meter: CostMeter) -> CostUpdated:
    """What the run has spent, per kept pair, and projected over the whole source."""
    spent = meter.total_usd()
    images = int(store.scalar("SELECT COUNT(*) FROM images") or 0)
    done = progress.done_units - progress.failed_units
    kept = progress.kept_pairs
    per_kept = spent / kept if kept else None
    # The projection is for the whole source, whatever --limit this run has.
    projected = spent / done * images * len(config.generation.tasks) if done else None
    return CostUpdated(round(spent, 6), round(per_kept, 6) if per_kept is not None else None,
                       round(projected, 4) if projected is not None else None)


def check_budget(progress: Progress, config: Config, meter: CostMeter) -> None:
    """Stop the run once its spending reaches [budget] max_usd."""
    limit = config.budget.max_usd
    if limit and not progress.budget_hit and meter.total_usd() >= limit:
        progress.stop_for_budget()
