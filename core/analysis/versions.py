"""Diversity per generation prompt version, each beside the baseline's on the same images."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from visinstruct.core.analysis.diversity import SAMPLE_CAP, Diversity, measure_sides
from visinstruct.core.store.database import Store
from visinstruct.core.store.interrupt import interruptible

RUN_ONLY = "g.purpose = 'run'"
RUN_AND_LAB = "(g.purpose = 'run' OR g.purpose LIKE 'lab:%')"
# A fixed pseudo-random order (a multiplicative hash of the row id): the same sample every
# time, drawn inside SQLite so a large store never loads more than `cap` rows.
_SHUFFLED = "ORDER BY (({column} + :seed) * 2654435761) % 4294967291 LIMIT :cap"


@dataclass(frozen=True)
class VersionDiversity:
    """One prompt version's answers and questions against the baseline's on its images."""

    version: str
    name: str
    task: str
    images: int
    pairs: int
    ours: Diversity
    baseline: Diversity


def version_diversity(store: Store, *, task: str | None = None, purposes: str = RUN_ONLY,
                      versions: Sequence[str] | None = None, seed: int = 0,
                      cap: int = SAMPLE_CAP,
                      cancel: threading.Event | None = None) -> list[VersionDiversity]:
    """Per (version, task) of the generations chosen by `purposes` (an SQL condition on g).

    Every pair made with the version counts (before judging: the prompt's own output);
    at most `cap` pairs per side are read. `cancel` stops it with ReadCancelled.
    """
    where = f"g.status = 'ok' AND {purposes}"
    params: dict[str, object] = {"seed": seed, "cap": cap}
    if task is not None:
        where += " AND g.task = :task"
        params["task"] = task
    names = {row[0]: row[1] for row in store.query("SELECT version, name FROM prompts")}
    result = []
    with interruptible(store, cancel):
        found = store.query(
            "SELECT g.prompt_version, g.task, COUNT(DISTINCT g.image_id), COUNT(p.id) "
            f"FROM generations g LEFT JOIN pairs p ON p.generation_id = g.id WHERE {where} "
            "GROUP BY g.prompt_version, g.task ORDER BY g.task, g.prompt_version", params)
        for version, version_task, images, pairs in found:
            if versions is not None and version not in versions:
                continue
            mine = {**params, "version": version, "task": version_task}
            ours = [(q, a) for q, a in store.query(
                "SELECT p.question, p.answer FROM pairs p JOIN generations g "
                "ON g.id = p.generation_id WHERE g.prompt_version = :version "
                f"AND g.task = :task AND g.status = 'ok' AND {purposes} "
                + _SHUFFLED.format(column="p.id"), mine)]
            theirs = _baseline_pairs(store, (
                "SELECT g.image_id FROM generations g WHERE g.prompt_version = :version "
                f"AND g.task = :task AND g.status = 'ok' AND {purposes}"), mine)
            sides = measure_sides({"ours": _split(ours), "baseline": _split(theirs)},
                                  seed=seed, cap=cap)
            result.append(VersionDiversity(version, names.get(version, ""), version_task,
                                           int(images), int(pairs), sides["ours"],
                                           sides["baseline"]))
    return result


def generations_diversity(store: Store, groups: Mapping[str, Sequence[int]], task: str, *,
                          seed: int = 0, cap: int = SAMPLE_CAP) -> dict[str, Diversity]:
    """Each group of generations' pairs (say a lab trial's two versions), and under "baseline"
    the baseline's pairs of `task` on all their images, measured on equal-size samples."""
    sides: dict[str, tuple[list[str], list[str]]] = {}
    every: list[int] = []
    for name, generation_ids in groups.items():
        every += generation_ids
        params = {"ids": json.dumps(list(generation_ids)), "seed": seed, "cap": cap}
        sides[name] = _split([(q, a) for q, a in store.query(
            "SELECT question, answer FROM pairs WHERE generation_id IN "
            "(SELECT value FROM json_each(:ids)) " + _SHUFFLED.format(column="id"), params)])
    sides["baseline"] = _split(_baseline_pairs(
        store, "SELECT image_id FROM generations WHERE id IN (SELECT value FROM json_each(:ids))",
        {"ids": json.dumps(every), "task": task, "seed": seed, "cap": cap}))
    return measure_sides(sides, seed=seed, cap=cap)


def _baseline_pairs(store: Store, images_sql: str,
                    params: dict[str, object]) -> list[tuple[str, str]]:
    """The baseline's pairs of the task on the images `images_sql` selects (sampled)."""
    pairs = []
    for (raw,) in store.query(
            "SELECT b.pairs FROM baseline_conversations b WHERE b.task = :task "
            f"AND b.image_id IN ({images_sql}) " + _SHUFFLED.format(column="b.id"), params):
        pairs += [(question.replace("<image>", "").strip(), answer)
                  for question, answer in json.loads(raw)]
    return pairs


def _split(pairs: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    return [a for _q, a in pairs], [q for q, _a in pairs]
