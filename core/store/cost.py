"""What a run costs, priced the way each backend declares: per instance-hour or per token."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, fields

from visinstruct.core.config import (
    BATCH_TOKENS,
    INSTANCE_HOURS,
    TOKENS,
    Config,
    GenerationConfig,
    JudgeConfig,
    ModelConfig,
    spec_for,
)
from visinstruct.core.errors import ConfigError
from visinstruct.core.store.database import Store
from visinstruct.core.store.queries import KEPT_SQL

# A batch-priced model's price keys hold batch prices, which Bedrock sets at half the
# on-demand price; its on-demand remainder is priced at this multiple of them.
ON_DEMAND_FACTOR = 2


@dataclass(frozen=True)
class CostReport:
    """Spent so far, per kept pair, and projected for the whole source."""

    cost_usd: float
    cost_per_kept_pair_usd: float | None
    projected_cost_usd: float | None
    by_model: dict[str, float]


def wall_hours(store: Store) -> float:
    """Hours the store's runs have been going (finished runs plus the running one)."""
    total = 0.0
    current = time.time()
    for started, finished in store.query("SELECT started_at, finished_at FROM runs"):
        total += max(0.0, (finished or current) - started)
    return total / 3600


def cost_report(store: Store, config: Config, *, kept_pairs: int | None = None,
                done_units: int | None = None) -> CostReport:
    """Price the ledger with each model's price keys; models without prices cost nothing.

    A running pipeline passes its own counts of kept pairs and done units, which saves two
    queries that are slow on a large store.
    """
    tallied = store.scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                           "AND name = 'call_tally'")
    # The running tally the store's triggers keep (schema 5), else a scan of the ledger.
    tokens = {row[0]: (row[1] or 0, row[2] or 0) for row in store.query(
        "SELECT model, SUM(tokens_in), SUM(tokens_out) FROM "
        f"{'call_tally' if tallied else 'llm_calls'} GROUP BY model")}
    batch_models = [n for n, m in config.models.items() if _pricing(m) == BATCH_TOKENS]
    on_demand: dict[str, tuple[int, int]] = {}
    if batch_models:
        marks = ",".join("?" * len(batch_models))
        on_demand = {row[0]: (row[1] or 0, row[2] or 0) for row in store.query(
            "SELECT model, SUM(tokens_in), SUM(tokens_out) FROM llm_calls "
            f"WHERE model IN ({marks}) AND COALESCE(endpoint, '') NOT LIKE 'batch:%' "
            "GROUP BY model", tuple(batch_models))}
    hours = wall_hours(store)
    by_model: dict[str, float] = {}
    for name, model in config.models.items():
        pricing = _pricing(model)
        if pricing == INSTANCE_HOURS:
            if name not in tokens or not model.price_per_instance_hour:
                continue
            instances = model.instances * max(1, len(model.endpoints))
            by_model[name] = hours * instances * model.price_per_instance_hour
        else:
            used_in, used_out = tokens.get(name, (0, 0))
            if pricing == BATCH_TOKENS:
                # The on-demand remainder is billed at on-demand prices: count it once more.
                extra_in, extra_out = on_demand.get(name, (0, 0))
                used_in += (ON_DEMAND_FACTOR - 1) * extra_in
                used_out += (ON_DEMAND_FACTOR - 1) * extra_out
            spent = (used_in * model.price_in_per_million
                     + used_out * model.price_out_per_million) / 1e6
            if spent:
                by_model[name] = spent
    total = sum(by_model.values())
    kept = kept_pairs if kept_pairs is not None else int(store.scalar(
        f"SELECT COUNT(*) FROM pair_state WHERE {KEPT_SQL}", (config.judge.threshold,)) or 0)
    images = int(store.scalar("SELECT COUNT(*) FROM images") or 0)
    tasks = len(config.generation.tasks)
    done = done_units if done_units is not None else int(store.scalar(
        "SELECT COUNT(*) FROM (SELECT DISTINCT image_id, task FROM generations "
        "WHERE purpose = 'run')") or 0)
    projected = total / done * images * tasks if done and images else None
    return CostReport(round(total, 6), round(total / kept, 6) if kept else None,
                      round(projected, 4) if projected is not None else None, by_model)


class CostMeter:
    """A running run's spend, kept in memory: priced once from the store, then per call."""

    def __init__(self, store: Store, config: Config) -> None:
        self.config = config
        report = cost_report(store, config, kept_pairs=0, done_units=0)
        hourly = {n for n, m in config.models.items() if _pricing(m) == INSTANCE_HOURS}
        self._tokens_usd = sum(v for n, v in report.by_model.items() if n not in hourly)
        # Instance-hours accrue with time for every priced hourly model the run uses.
        self._usd_per_hour = sum(
            m.instances * max(1, len(m.endpoints)) * m.price_per_instance_hour
            for n, m in config.models.items() if n in hourly and m.price_per_instance_hour
            and n in (config.generation.model, *config.judge.panel))
        self._hours_before = wall_hours(store)
        self._started = time.monotonic()
        self._lock = threading.Lock()

    def add_call(self, model: str, tokens_in: int, tokens_out: int, endpoint: str = "") -> None:
        """Count one finished call's tokens (on-demand calls of a batch model at double)."""
        priced = self.config.models.get(model)
        if priced is None:
            return
        pricing = _pricing(priced)
        if pricing == INSTANCE_HOURS:
            return
        factor = 1
        if pricing == BATCH_TOKENS and not endpoint.startswith("batch:"):
            factor = ON_DEMAND_FACTOR
        with self._lock:
            self._tokens_usd += factor * (tokens_in * priced.price_in_per_million
                                          + tokens_out * priced.price_out_per_million) / 1e6

    def total_usd(self) -> float:
        """Spent so far, this run included."""
        hours = self._hours_before + (time.monotonic() - self._started) / 3600
        with self._lock:
            return self._tokens_usd + hours * self._usd_per_hour


def _pricing(model: ModelConfig) -> str:
    """How `model`'s calls are priced, as its backend declares (core/config/backends.py)."""
    try:
        return spec_for(model).pricing
    except ConfigError:
        # A stored run's plugin that is no longer installed: its calls are still token calls.
        return TOKENS


def stored_config(store: Store, threshold: float) -> Config:
    """Enough of the last run's config to price its calls (models and tasks are kept in meta)."""
    models: dict[str, ModelConfig] = {}
    known = {f.name for f in fields(ModelConfig)}
    for name, body in json.loads(store.get_meta("models", "{}") or "{}").items():
        body = {k: (tuple(v) if isinstance(v, list) else v) for k, v in body.items() if k in known}
        models[name] = ModelConfig(**body)
    tasks = tuple(json.loads(store.get_meta("tasks", "[]") or "[]")) or GenerationConfig().tasks
    return Config(models=models, generation=GenerationConfig(tasks=tasks),
                  judge=JudgeConfig(threshold=threshold))
