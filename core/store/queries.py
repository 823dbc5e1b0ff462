"""Read queries over the store: images with their context, counts, kept pairs for export."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence

from visinstruct.core.records import Box, Image, Pair
from visinstruct.core.store.database import Store
from visinstruct.core.store.scene_queries import load_scene_parts
from visinstruct.core.store.verdicts import (
    BY_GATE,
    VerdictCounts,
    counts_sql,
    dropped_by_sql,
    kept_sql,
)

# Over `pair_state` rows, with the threshold as the one parameter (rules: store/verdicts.py).
KEPT_SQL = kept_sql("?")


# `p` (a pairs row) belongs to the current generation of its image and task.
_CURRENT = "p.generation_id IN (SELECT id FROM current_generations)"


def load_images(store: Store, ids: Sequence[int]) -> dict[int, Image]:
    """Images with their captions and boxes, scene graphs and facts, a few queries per batch."""
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    captions: dict[int, list[str]] = defaultdict(list)
    for row in store.query(f"SELECT image_id, text FROM captions WHERE image_id IN ({marks}) "
                           "ORDER BY image_id, idx", ids):
        captions[row[0]].append(row[1])
    boxes: dict[int, list[Box]] = defaultdict(list)
    for row in store.query(f"SELECT image_id, category, x1, y1, x2, y2, crowd FROM boxes "
                           f"WHERE image_id IN ({marks}) ORDER BY image_id, idx", ids):
        boxes[row[0]].append(Box(row[1], (row[2], row[3], row[4], row[5]), bool(row[6])))
    objects, relations, facts = load_scene_parts(store, ids)
    result = {}
    for row in store.query(f"SELECT id, file_name, width, height, split, source, source_id, "
                           f"location, weather FROM images WHERE id IN ({marks})", ids):
        image_id = row[0]
        result[image_id] = Image(image_id, row[1], row[2], row[3],
                                 tuple(captions.get(image_id, ())), tuple(boxes.get(image_id, ())),
                                 row[4], row[5], row[6], tuple(objects.get(image_id, ())),
                                 tuple(relations.get(image_id, ())), tuple(facts.get(image_id, ())),
                                 row[7], row[8])
    return result


def image_ids(store: Store, after: int = -1, page: int = 1000) -> list[int]:
    """A page of image ids in id order, after `after`."""
    return [r[0] for r in store.query(
        "SELECT id FROM images WHERE id > ? ORDER BY id LIMIT ?", (after, page))]


def count_images(store: Store) -> int:
    return int(store.scalar("SELECT COUNT(*) FROM images") or 0)


def baseline_pairs(store: Store, image_id: int,
                   task: str | None = None) -> list[tuple[str, tuple[Pair, ...]]]:
    """The baseline conversations of an image as (task, pairs)."""
    sql = "SELECT task, pairs FROM baseline_conversations WHERE image_id = ?"
    params: list[object] = [image_id]
    if task:
        sql += " AND task = ?"
        params.append(task)
    return [(row[0], tuple(Pair(q, a) for q, a in json.loads(row[1])))
            for row in store.query(sql + " ORDER BY id", params)]


def status_counts(store: Store, threshold: float) -> dict[str, int]:
    """What the store holds; the keys are part of the `status --json` contract."""
    def n(sql: str, params: Sequence[object] = ()) -> int:
        return int(store.scalar(sql, params) or 0)

    return {
        "images": n("SELECT COUNT(*) FROM images"),
        "captions": n("SELECT COUNT(*) FROM captions"),
        "boxes": n("SELECT COUNT(*) FROM boxes"),
        "images_with_boxes": n("SELECT COUNT(DISTINCT image_id) FROM boxes"),
        "baseline_conversations": n("SELECT COUNT(*) FROM baseline_conversations"),
        "baseline_images": n("SELECT COUNT(DISTINCT image_id) FROM baseline_conversations"),
        "conversations": n("SELECT COUNT(*) FROM current_generations"),
        **verdict_figures(verdict_counts(store, threshold)),
        "facts": n("SELECT COUNT(*) FROM facts"),
        "calls": n("SELECT COUNT(*) FROM llm_calls"),
        "failed_calls": n("SELECT COUNT(*) FROM llm_calls WHERE status = 'error'"),
        "abandoned_calls": n("SELECT COUNT(*) FROM llm_calls WHERE status = 'abandoned'"),
        "in_flight_calls": n("SELECT COUNT(*) FROM llm_calls WHERE status = 'in_flight'"),
        "parse_failures": n("SELECT COUNT(*) FROM generations "
                            "WHERE status = 'parse_failure' AND purpose = 'run'"),
        "evaluations": n("SELECT COUNT(*) FROM evaluations"),
        "runs": n("SELECT COUNT(*) FROM runs"),
    }


def verdict_counts(store: Store, threshold: float) -> VerdictCounts:
    """The current pairs by verdict (store/verdicts.py), in one pass."""
    row = store.query(counts_sql(":threshold"), {"threshold": threshold})[0]
    return VerdictCounts(*(int(value or 0) for value in row))


def verdict_figures(counts: VerdictCounts) -> dict[str, int]:
    """The verdict counts under their `status --json` names (the one vocabulary)."""
    return {
        "pairs": counts.pairs,
        "judged_pairs": counts.judged,
        "kept_pairs": counts.kept,
        "dropped_pairs": counts.dropped,
        "unjudged_pairs": counts.unjudged,
        "gated_pairs": counts.dropped_by_gate,          # dropped by a quality gate
        "below_threshold_pairs": counts.dropped_by_judge,  # dropped by the judge's score
        "rejected_pairs": counts.dropped_by_human,      # dropped by a person in review
        "flagged_pairs": counts.flagged,
    }


def gate_counts(store: Store) -> dict[str, dict[str, int]]:
    """Pairs of the current data per gate rule: {"dropped": {rule: n}, "flagged": {rule: n}}.

    "dropped" counts the pairs whose verdict is dropped by that gate (a human's decision on a
    gated pair, either way, takes it out of the gate's count).
    """
    dropped = {row[0]: int(row[1]) for row in store.query(
        f"SELECT gate_rule, COUNT(*) FROM pair_state WHERE {dropped_by_sql('0')} = '{BY_GATE}' "
        "GROUP BY gate_rule ORDER BY gate_rule")}
    flagged = {row[0]: int(row[1]) for row in store.query(
        "SELECT x.rule, COUNT(DISTINCT x.pair_id) FROM pair_gates x "
        "JOIN pairs p ON p.id = x.pair_id "
        f"WHERE x.action = 'flag' AND {_CURRENT} GROUP BY x.rule ORDER BY x.rule")}
    return {"dropped": dropped, "flagged": flagged}
