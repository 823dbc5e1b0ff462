"""The `status` report: what the store holds, what it cost, and what the whole source would cost."""

from __future__ import annotations

from typing import Any

from visinstruct.core.analysis.agreement import stored_judge_agreement
from visinstruct.core.pipeline.tally import money
from visinstruct.core.records import RunState
from visinstruct.core.store.batch_jobs import batch_jobs_report
from visinstruct.core.store.cost import cost_report, stored_config
from visinstruct.core.store.database import Store
from visinstruct.core.store.pictures import last_run_problems, pictures_sent
from visinstruct.core.store.queries import gate_counts, status_counts
from visinstruct.core.store.scene_queries import images_by_source
from visinstruct.core.store.writer_lock import holder_pid


def status_report(store: Store, threshold: float) -> dict[str, Any]:
    """Counts (keys relied on by scripts), cost keys, the last run, and the threshold used."""
    report: dict[str, Any] = dict(status_counts(store, threshold))
    report["images_by_source"] = images_by_source(store)
    gates = gate_counts(store)
    report["dropped_by_rule"] = gates["dropped"]
    report["flagged_by_rule"] = gates["flagged"]
    cost = cost_report(store, stored_config(store, threshold))
    report["cost_usd"] = cost.cost_usd
    report["cost_per_kept_pair_usd"] = cost.cost_per_kept_pair_usd
    report["projected_cost_usd"] = cost.projected_cost_usd
    report["models"] = models_report(store)
    report["threshold"] = threshold
    report["batch_jobs"] = batch_jobs_report(store)
    last = store.reader().execute(
        "SELECT id, status, started_at, finished_at, total_units FROM runs ORDER BY id DESC LIMIT 1"
    ).fetchone()
    status = None if last is None else last[1]
    if status == RunState.RUNNING:
        status = RunState.as_it_stands(status, holder_pid(store.path) is not None)
    report["last_run"] = None if last is None else {
        "id": last[0], "status": status, "started_at": last[2], "finished_at": last[3],
        "total_units": last[4]}
    report["pictures_sent"] = pictures_sent(store)
    # The last run's images whose picture could not be sent (their units failed, no call).
    report["pictures_unusable"] = last_run_problems(store)
    # Always an object, so scripts can read ["n"]: with no blind decisions n is 0 and every
    # figure is null.
    report["judge_agreement"] = stored_judge_agreement(store, threshold).as_dict()
    return report


def models_report(store: Store) -> dict[str, dict[str, Any]]:
    """The models that made the current data, with their model id and licence as recorded."""
    from visinstruct.core.store.provenance import models_used, recorded_models

    recorded = recorded_models(store)
    report: dict[str, dict[str, Any]] = {}
    for role, names in models_used(store).items():
        for name in names:
            found = recorded.get(name)
            entry = report.setdefault(name, {
                "roles": [], "model_id": (found.model_id or None) if found else None,
                "license": (found.license or None) if found else None})
            entry["roles"].append(role)
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
    if isinstance(value, dict):
        # Counts by source or gate rule, or the judge-agreement figures.
        return ", ".join(f"{name} {_value(name, figure)}" for name, figure in value.items()) \
            or "none"
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
        if key == "pictures_unusable":
            rows.append((key, f"{value['count']:,}" if value["count"] else "none"))
            rows.extend(("  picture", text) for text in value["files"])
            continue
        if key == "models":
            rows.extend(("model", f"{name} ({', '.join(facts['roles'])}): "
                                  f"{facts['model_id'] or 'model id not recorded'}, licence "
                                  f"{facts['license'] or 'not recorded'}")
                        for name, facts in value.items())
            continue
        if key == "batch_jobs":
            rows.extend(("batch job", f"{job['stage']} {job['model']} {job['records']:,} records "
                                      f"{job['status']} {job['arn']}") for job in value)
            continue
        rows.append((key, _value(key, value)))
    width = max(len(name) for name, _ in rows)
    return [f"{name:<{width}}  {text}" for name, text in rows]
