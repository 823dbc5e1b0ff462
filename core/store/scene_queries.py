"""Read queries for the GQA and VQAv2 parts of the store: scene graphs, facts, sources."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence

from visinstruct.core.records import SOURCES, Fact, Relation, SceneObject
from visinstruct.core.store.database import Store


def load_scene_parts(store: Store, ids: Sequence[int]) -> tuple[
        dict[int, list[SceneObject]], dict[int, list[Relation]], dict[int, list[Fact]]]:
    """The objects, relations and facts (in file order) of the images `ids`."""
    marks = ",".join("?" * len(ids))
    objects: dict[int, list[SceneObject]] = defaultdict(list)
    for row in store.query(f"SELECT image_id, object_key, name, x1, y1, x2, y2, attributes "
                           f"FROM objects WHERE image_id IN ({marks}) ORDER BY image_id, idx", ids):
        objects[row[0]].append(SceneObject(row[1], row[2], (row[3], row[4], row[5], row[6]),
                                           tuple(json.loads(row[7]))))
    relations: dict[int, list[Relation]] = defaultdict(list)
    for row in store.query(f"SELECT image_id, subject_idx, name, object_idx FROM relations "
                           f"WHERE image_id IN ({marks}) ORDER BY id", ids):
        relations[row[0]].append(Relation(row[1], row[2], row[3]))
    facts: dict[int, list[Fact]] = defaultdict(list)
    for row in store.query(f"SELECT image_id, question_id, question, answer, source FROM facts "
                           f"WHERE image_id IN ({marks}) ORDER BY id", ids):
        facts[row[0]].append(Fact(row[0], row[1], row[2], row[3], row[4]))
    return objects, relations, facts


def images_by_source(store: Store) -> dict[str, int]:
    """How many images each source has in the store ({"coco": n, "gqa": m})."""
    counts = dict.fromkeys(SOURCES, 0)
    for source, count in store.query("SELECT source, COUNT(*) FROM images GROUP BY source"):
        counts[source] = count
    return counts


def gqa_image_ids(store: Store) -> dict[int, str]:
    """Store id -> GQA image id, for every GQA image (export writes the GQA id)."""
    return {row[0]: row[1] for row in store.iter_query(
        "SELECT id, source_id FROM images WHERE source = 'gqa'", size=5000)}


def image_sources(store: Store) -> dict[int, str]:
    """Store id -> source, for the images that are not COCO's (every other image is COCO)."""
    return {row[0]: row[1] for row in store.iter_query(
        "SELECT id, source FROM images WHERE source != 'coco'", size=5000)}


def object_names(store: Store) -> dict[int, frozenset[str]]:
    """Each GQA image's object names (lower case): what CHAIR checks mentions against there."""
    by_image: dict[int, set[str]] = defaultdict(set)
    for image_id, name in store.iter_query("SELECT image_id, name FROM objects", size=5000):
        by_image[image_id].add(name.lower())
    return {image_id: frozenset(names) for image_id, names in by_image.items()}
