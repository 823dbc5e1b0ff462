"""The `status` report: what the store holds, what it cost, and what the whole source would cost."""

from __future__ import annotations

from typing import Any

from visinstruct.core.store.cost import cost_report, stored_config
from visinstruct.core.store.queries import status_counts
from visinstruct.core.store.database import Store


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
