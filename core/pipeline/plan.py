"""What a run would do before it starts: models, units left, calls and cost, to confirm it."""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from visinstruct.core.config import Config, spec_for
from visinstruct.core.errors import VisinstructError
from visinstruct.core.models.pictures import PICTURE_FOLDERS
from visinstruct.core.pipeline.backlog import Backlog, Redone
from visinstruct.core.pipeline.indexer import index_sources
from visinstruct.core.pipeline.seeing import PicturePlan, picture_plan
from visinstruct.core.pipeline.tally import counted, money
from visinstruct.core.records import FACT_TASKS, UnitNeed
from visinstruct.core.store.cost import cost_report
from visinstruct.core.store.database import Store

SOURCE_COUNT_BYTES = 64 * 2**20  # sources up to this size are counted before a first run


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
    source_units: int | None = None   # a store with no images: the units its source makes
    licences: tuple[tuple[str, str], ...] = ()  # (model, its [models.X] license or "")
    pictures: PicturePlan | None = None  # the pictures models that see would be sent
    redone: tuple[Redone, ...] = ()  # units of the left owed again: a prompt version changed

    def describe(self) -> str:
        """Lines for the confirmation dialog."""
        if not self.images_indexed and self.source_units is not None:
            units = "its 1 unit runs" if self.source_units == 1 else \
                f"all {counted(self.source_units, 'unit')} run"
            work = f"The store holds no images yet: the source is indexed first, then {units}."
        elif not self.images_indexed:
            work = ("The store holds no images yet: the source is indexed first, then every "
                    "unit runs (a source this large is counted once indexed: `visinstruct "
                    "prepare` indexes it without running).")
        else:
            work = (f"{self.units_left:,} of {self.total_units:,} units left "
                    f"(about {self.calls:,} model calls).")
            work += "".join(f"\n{again.describe()}" for again in self.redone)
        if self.local:
            cost = "Cost: none (local model), but CPU time grows with the units."
        elif self.cost_usd is None:
            cost = "Cost: not known yet (no priced calls in this store to project from)."
        else:
            cost = f"Cost: about {money(self.cost_usd)} more, at this store's cost per unit."
        licences = ""
        if self.licences:
            licences = "\nLicences: " + ", ".join(
                f"{name} {licence or 'not recorded ([models.' + name + '] license)'}"
                for name, licence in self.licences)
        seen = self.pictures.describe() if self.pictures is not None else ""
        return (f"Config: {self.origin}\nModels: generation {self.generation_model}, judge "
                f"{self.judge_model}{licences}\n{work}\n{cost}" + (f"\n{seen}" if seen else ""))


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
    source = source_units(config) if not images else None
    names = dict.fromkeys((config.generation.model, *config.judge.panel))
    licences = tuple((name, config.model(name).license) for name in names)
    # Pictures go with each generation and each judging of a model that sees (estimated).
    pictures = picture_plan(config, store, needs[UnitNeed.GENERATE],
                            needs[UnitNeed.GENERATE] + needs[UnitNeed.JUDGE])
    return RunPlan(config.origin, config.generation.model, config.judge.identity, images, total,
                   left, calls, cost, local, source, licences, pictures=pictures,
                   redone=backlog.redone() if images and left else ())


def source_units(config: Config) -> int | None:
    """The units a run would make of its source on an empty store; None when unknown.

    A source of at most SOURCE_COUNT_BYTES is indexed into a scratch store and counted there
    (the same reading and the same rule as the run); a larger one is not read here.
    """
    read = [value for name, value in vars(config.source).items()
            if isinstance(value, Path) and name not in PICTURE_FOLDERS]
    if not read or not all(path.is_file() for path in read) \
            or sum(path.stat().st_size for path in read) > SOURCE_COUNT_BYTES:
        return None  # nothing to index, a folder of parts, or too much to read twice
    with tempfile.TemporaryDirectory(prefix="visinstruct-plan-") as scratch:
        try:
            with Store(Path(scratch) / "count.db") as store:
                index_sources(store, config.source)
                images = int(store.scalar("SELECT COUNT(*) FROM images") or 0)
        except VisinstructError:
            return None  # the run says what is wrong with the source
    return Backlog.units_of(config, images)
