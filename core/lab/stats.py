"""Prompt versions side by side: mean judge score, keep rate, parse failures, relative score."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass

from visinstruct.core.evaluation.aggregate import VerdictRow, compared_items, relative_score
from visinstruct.core.store.database import Store
from visinstruct.core.store.interrupt import interruptible
from visinstruct.core.store.verdicts import PairColumns, judged_sql, kept_sql

# samples, parse failures, pairs, scored pairs, kept pairs, mean score, evaluated items, relative
_Numbers = tuple[int, int, int, int, int, "float | None", int, "float | None"]
_EMPTY: _Numbers = (0, 0, 0, 0, 0, None, 0, None)


@dataclass(frozen=True)
class VersionStats:
    """One prompt version's results over the run data made with it (lab trials never count here).

    For the judge prompt a sample is one judged pair, and a parse failure an unreadable score.
    """

    version: str
    task: str
    active: bool
    samples: int
    parse_failures: int
    pairs: int
    scored: int
    kept: int
    mean_score: float | None
    evaluated: int
    relative_score: float | None
    created_at: float | None

    @property
    def keep_rate(self) -> float | None:
        return self.kept / self.pairs if self.pairs else None

    @property
    def parse_failure_rate(self) -> float | None:
        return self.parse_failures / self.samples if self.samples else None


def version_stats(store: Store, task: str, threshold: float | None = None,
                  cancel: threading.Event | None = None) -> list[VersionStats]:
    """Per stored version of prompt `task` (and any version a trial used), the active one first.

    Scans every generation of the task (seconds on a big store): callers run it off the UI
    thread, and `cancel` stops it with ReadCancelled.
    """
    if threshold is None:
        threshold = float(store.get_meta("judge_threshold", "7") or 7)
    active = store.scalar("SELECT version FROM active_prompts WHERE name = ?", (task,))
    created = {r[0]: r[1] for r in store.query(
        "SELECT version, created_at FROM prompts WHERE name = ?", (task,))}
    with interruptible(store, cancel):
        stats = _judge_stats(store, threshold) if task == "judge" else _generation_stats(
            store, task, threshold)
    for version in [*created, *([active] if active else [])]:
        stats.setdefault(version, _EMPTY)
    result = [VersionStats(version, task, version == active, *numbers, created.get(version))
              for version, numbers in stats.items()]
    # Active first, then newest saved, then versions only trials used.
    result.sort(key=lambda s: (not s.active, -(s.created_at or 0.0), s.version))
    return result


_FACTS = PairColumns(score="s", decision="d", gated="x", task="t")


def _generation_stats(store: Store, task: str, threshold: float) -> dict[str, _Numbers]:
    samples = {r[0]: (int(r[1]), int(r[2] or 0)) for r in store.query(
        "SELECT prompt_version, COUNT(*), SUM(status = 'parse_failure') FROM generations "
        "WHERE task = ? AND purpose = 'run' GROUP BY prompt_version",
        (task,))}
    # Pairs, judged pairs, their mean score and kept pairs per version, by the one set of
    # verdict rules (store/verdicts.py): a gated pair's old score counts for nothing.
    pair_rows = {r[0]: r[1:] for r in store.query(
        "SELECT v, COUNT(*), COALESCE(SUM(jd), 0), AVG(CASE WHEN jd THEN s END), "
        "COALESCE(SUM(k), 0) FROM ("
        f" SELECT v, s, {judged_sql(_FACTS)} AS jd, {kept_sql(':threshold', _FACTS)} AS k FROM ("
        "  SELECT g.prompt_version AS v, g.task AS t,"
        "  (SELECT j.score FROM judgements j WHERE j.pair_id = p.id ORDER BY j.id DESC"
        " LIMIT 1) AS s,"
        "  (SELECT r.decision FROM reviews r WHERE r.pair_id = p.id"
        "   AND r.decision IN ('accept', 'reject') ORDER BY r.id DESC LIMIT 1) AS d,"
        "  EXISTS (SELECT 1 FROM pair_gates x WHERE x.pair_id = p.id AND x.action = 'drop') AS x"
        "  FROM generations g JOIN pairs p ON p.generation_id = g.id"
        "  WHERE g.task = :task AND g.status = 'ok' AND g.purpose = 'run'"
        "  LIMIT -1)) GROUP BY v", {"threshold": threshold, "task": task})}
    relative = _relative_scores(store, task)
    stats: dict[str, _Numbers] = {}
    for version, (count, failures) in samples.items():
        pairs, scored, mean, kept = pair_rows.get(version, (0, 0, None, 0))
        evaluated, rel = relative.get(version, (0, None))
        stats[version] = (count, failures, int(pairs), int(scored), int(kept),
                          None if mean is None else float(mean), evaluated, rel)
    return stats


def _relative_scores(store: Store, task: str) -> dict[str, tuple[int, float | None]]:
    """(compared items, relative score) per generation prompt version, as `evaluate` computes it."""
    rows: dict[str, list[VerdictRow]] = defaultdict(list)
    for version, image_id, mode, item, first, ours, baseline, parsed in store.query(
            "SELECT g.prompt_version, e.image_id, e.mode, e.item, e.shown_first, e.ours_score, "
            "e.baseline_score, e.parsed FROM evaluations e "
            "JOIN generations g ON g.id = e.generation_id WHERE g.task = ? AND g.purpose = 'run' "
            "AND e.mode = "
            "'conversation' ORDER BY e.id", (task,)):
        rows[version].append(VerdictRow(image_id, task, mode, item, first, ours, baseline,
                                        bool(parsed)))
    result = {}
    for version, verdicts in rows.items():
        items = compared_items(verdicts)
        result[version] = (len(items), relative_score(items))
    return result


def _judge_stats(store: Store, threshold: float) -> dict[str, _Numbers]:
    stats: dict[str, _Numbers] = {}
    for version, total, scored, mean, kept in store.query(
            "SELECT j.prompt_version, COUNT(*), COUNT(j.score), AVG(j.score), "
            "COALESCE(SUM(j.score >= ?), 0) FROM judgements j "
            "JOIN generations g ON g.id = j.generation_id WHERE g.purpose = 'run' "
            "GROUP BY j.prompt_version", (threshold,)):
        stats[version] = (int(total), int(total - scored), int(total), int(scored), int(kept),
                          None if mean is None else float(mean), 0, None)
    return stats
