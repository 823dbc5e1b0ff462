"""What a run would do before it starts: models, units left, calls and cost, to confirm it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from visinstruct.core.config import Config, spec_for
from visinstruct.core.pipeline.backlog import Backlog
from visinstruct.core.pipeline.tally import money
from visinstruct.core.records import FACT_TASKS, UnitNeed
from visinstruct.core.store.cost import cost_report
from visinstruct.core.store.database import Store


@dataclass(frozen=True)
class RunPlan:
    """A run's work as the store stands: units in all, units left and the calls they need."""

    origin: str
    generation_model: str
    judge_model: str
    images_indexed: int
    total_units: int
    units_left: int
    calls: int
    cost_usd: float | None       # None: nothing priced yet to project from
    local: bool                  # both models run on this machine (no bill, hours of CPU)

    def describe(self) -> str:
        """Lines for the confirmation dialog."""
        if not self.images_indexed:
            work = ("The store holds no images yet: the source is indexed first, then every "
                    "unit runs.")
        else:
            work = (f"{self.units_left:,} of {self.total_units:,} units left "
                    f"(about {self.calls:,} model calls).")
        if self.local:
            cost = "Cost: none (local model), but CPU time grows with the units."
        elif self.cost_usd is None:
            cost = "Cost: not known yet (no priced calls in this store to project from)."
        else:
            cost = f"Cost: about {money(self.cost_usd)} more, at this store's cost per unit."
        return (f"Config: {self.origin}\nModels: generation {self.generation_model}, judge "
                f"{self.judge_model}\n{work}\n{cost}")


def plan_run(config: Config, store: Store) -> RunPlan:
    """Count what `run(config, store)` would do now, reading the store only."""
    backlog = Backlog.load(config, store)
    images = int(store.scalar("SELECT COUNT(*) FROM images") or 0)
    total, done = backlog.count()
    # Short answers are made from the facts: no model call.
    needs = Counter(owed.need for owed in backlog.owed() if owed.task not in FACT_TASKS)
    # Calls a unit needs at least: a generation, then one judging per panel member
    # (retries come on top).
    judges = len(config.judge.panel)
    calls = (needs[UnitNeed.GENERATE] * (1 + judges) + needs[UnitNeed.JUDGE] * judges)
    left = max(0, total - done)
    local = all(spec_for(config.model(name)).runs_locally
                for name in (config.generation.model, *config.judge.panel))
    cost: float | None = None
    if not local and done:
        spent = cost_report(store, config).cost_usd
        cost = spent / done * left if spent else None
    return RunPlan(config.origin, config.generation.model, config.judge.identity, images, total,
                   left, calls, cost, local)
