"""What a run costs: instance-hours for SageMaker, tokens for Bedrock and OpenAI-compatible servers."""

from __future__ import annotations

import time
from dataclasses import dataclass

from visinstruct.core.config import Config
from visinstruct.core.queries import KEPT_SQL
from visinstruct.core.store import Store


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


def cost_report(store: Store, config: Config) -> CostReport:
    """Price the ledger with each model's price keys; models without prices cost nothing."""
    tokens = {row[0]: (row[1] or 0, row[2] or 0) for row in store.query(
        "SELECT model, SUM(tokens_in), SUM(tokens_out) FROM llm_calls GROUP BY model")}
    hours = wall_hours(store)
    by_model: dict[str, float] = {}
    for name, model in config.models.items():
        if model.backend == "sagemaker":
            if name not in tokens or not model.price_per_instance_hour:
                continue
            instances = model.instances * max(1, len(model.endpoints))
            by_model[name] = hours * instances * model.price_per_instance_hour
        else:
            used_in, used_out = tokens.get(name, (0, 0))
            spent = (used_in * model.price_in_per_million
                     + used_out * model.price_out_per_million) / 1e6
            if spent:
                by_model[name] = spent
    total = sum(by_model.values())
    kept = int(store.scalar(f"SELECT COUNT(*) FROM pair_state WHERE {KEPT_SQL}",
                            (config.judge.threshold,)) or 0)
    images = int(store.scalar("SELECT COUNT(*) FROM images") or 0)
    tasks = len(config.generation.tasks)
    done = int(store.scalar(
        "SELECT COUNT(*) FROM (SELECT DISTINCT image_id, task FROM generations WHERE purpose = 'run')") or 0)
    projected = total / done * images * tasks if done and images else None
    return CostReport(round(total, 6), round(total / kept, 6) if kept else None,
                      round(projected, 4) if projected is not None else None, by_model)
