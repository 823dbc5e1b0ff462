"""The `status` report: what the store holds, what it cost, and what the whole source would cost."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from visinstruct.core.config import Config, GenerationConfig, JudgeConfig, ModelConfig
from visinstruct.core.models.cost import cost_report
from visinstruct.core.pipeline.tally import money
from visinstruct.core.store.queries import status_counts
from visinstruct.core.store.database import Store


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


def status_report(store: Store, threshold: float) -> dict[str, Any]:
    """Counts (keys relied on by scripts), cost keys, the last run, and the threshold used."""
    report: dict[str, Any] = dict(status_counts(store, threshold))
    cost = cost_report(store, stored_config(store, threshold))
    report["cost_usd"] = cost.cost_usd
    report["cost_per_kept_pair_usd"] = cost.cost_per_kept_pair_usd
    report["projected_cost_usd"] = cost.projected_cost_usd
    report["threshold"] = threshold
    last = store.reader().execute(
        "SELECT id, status, started_at, finished_at, total_units FROM runs ORDER BY id DESC LIMIT 1"
    ).fetchone()
    report["last_run"] = None if last is None else {
        "id": last[0], "status": last[1], "started_at": last[2], "finished_at": last[3],
        "total_units": last[4]}
    return report


def _when(stamp: float | None) -> str:
    """A local date and time to the second, or '–'."""
    if stamp is None:
        return "–"
    from datetime import datetime

    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")


def _value(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if key.endswith("_usd"):
        return money(float(value))
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def human_lines(report: dict[str, Any]) -> list[str]:
    """The status report for people: aligned names, dates instead of epoch seconds."""
    rows: list[tuple[str, str]] = []
    for key, value in report.items():
        if key == "last_run":
            if value is None:
                rows.append(("last_run", "none yet"))
                continue
            rows.append(("last_run", f"run {value['id']} {value['status']}, "
                                     f"{value['total_units'] or 0:,} units"))
            rows.append(("  started", _when(value["started_at"])))
            rows.append(("  finished", _when(value["finished_at"])))
            continue
        rows.append((key, _value(key, value)))
    width = max(len(name) for name, _ in rows)
    return [f"{name:<{width}}  {text}" for name, text in rows]
