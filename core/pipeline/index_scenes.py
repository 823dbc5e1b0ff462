"""Index GQA scene graphs as images of their own, and VQAv2 and GQA answers as facts."""

from __future__ import annotations

import collections
import json
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from visinstruct.core.config import SourceConfig
from visinstruct.core.records import Fact
from visinstruct.core.store.inserter import BatchedInserter, Progress

if TYPE_CHECKING:
    from visinstruct.dataset.gqa import GqaScene

# A GQA image's row id in the store; its own (string) id is kept in images.source_id.
# COCO ids stay the row ids of COCO images and are all far below this.
GQA_ID_BASE = 1_000_000_000
FACT_SOURCE_KEYS: tuple[str, ...] = (
    "gqa_scene_graphs", "gqa_questions", "vqa_questions", "vqa_annotations")


def index_fact_sources(conn: sqlite3.Connection, source: SourceConfig,
                       baseline_gqa: set[str] | None,
                       progress: Progress | None) -> collections.Counter[str]:
    """Index the GQA scenes (those in the baseline, when there is one), then both sets of facts.

    Runs after the COCO images are in, so VQAv2 facts find their images.
    """
    added: collections.Counter[str] = collections.Counter()
    if source.gqa_scene_graphs is not None:
        from visinstruct.dataset.gqa import read_scene_graphs

        path = Path(source.gqa_scene_graphs)
        index_gqa_scenes(conn, read_scene_graphs(path), baseline_gqa, gqa_split(path), added,
                         progress)
    if source.gqa_questions is not None:
        from visinstruct.dataset.gqa import read_gqa_questions

        by_gqa_id = gqa_ids(conn)
        index_facts(conn, "gqa", read_gqa_questions(Path(source.gqa_questions)),
                    lambda fact: by_gqa_id.get(str(fact.image_key)), added, progress)
    if source.vqa_questions is not None and source.vqa_annotations is not None:
        from visinstruct.dataset.vqa import read_vqa

        coco = coco_ids(conn)

        def coco_row(fact: Fact) -> int | None:
            key = fact.image_key
            return key if isinstance(key, int) and key in coco else None

        index_facts(conn, "vqa", read_vqa(Path(source.vqa_questions),
                                          Path(source.vqa_annotations), only=coco),
                    coco_row, added, progress)
    return added


def gqa_split(path: Path) -> str:
    """'train' for train_sceneGraphs.json, 'val' for val_sceneGraphs.json, else ''."""
    head = path.name.split("_", 1)[0]
    return head if head in ("train", "val", "testdev", "test", "challenge", "submission") else ""


def index_gqa_scenes(conn: sqlite3.Connection, scenes: Iterable[GqaScene], only: set[str] | None,
                     split: str, summary: collections.Counter[str],
                     progress: Progress | None) -> None:
    """Add the scenes not yet in the store (and, with `only`, in the baseline) as images."""
    known = {row[0] for row in conn.execute("SELECT source_id FROM images WHERE source = 'gqa'")}
    next_id = max(GQA_ID_BASE, int(conn.execute(
        "SELECT COALESCE(MAX(id), 0) FROM images").fetchone()[0])) + 1
    with BatchedInserter(conn, "gqa images", (
            "INSERT INTO images (id, file_name, width, height, split, source, source_id, "
            "location, weather) VALUES (?, ?, ?, ?, ?, 'gqa', ?, ?, ?)",
            "INSERT INTO objects (image_id, idx, object_key, name, x1, y1, x2, y2, attributes) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            "INSERT INTO relations (image_id, subject_idx, name, object_idx) VALUES (?, ?, ?, ?)"),
            progress=progress) as inserter:
        for scene in scenes:
            if (only is not None and scene.image_id not in only) or scene.image_id in known:
                summary["gqa_skipped"] += 1
                continue
            known.add(scene.image_id)
            image_id = next_id
            next_id += 1
            inserter.add(
                (image_id, f"{scene.image_id}.jpg", scene.width, scene.height, split,
                 scene.image_id, scene.location, scene.weather),
                [(image_id, n, o.key, o.name, *o.bbox, json.dumps(list(o.attributes)))
                 for n, o in enumerate(scene.objects)],
                [(image_id, r.subject, r.name, r.object) for r in scene.relations])
            summary["gqa_images"] += 1
            summary["objects"] += len(scene.objects)
            summary["relations"] += len(scene.relations)


def gqa_ids(conn: sqlite3.Connection) -> dict[str, int]:
    """GQA image id -> store row id, for every GQA image in the store."""
    return dict(conn.execute("SELECT source_id, id FROM images WHERE source = 'gqa'").fetchall())


def coco_ids(conn: sqlite3.Connection) -> set[int]:
    """The ids of the COCO images in the store."""
    return {row[0] for row in conn.execute("SELECT id FROM images WHERE source = 'coco'")}


def index_facts(conn: sqlite3.Connection, source: str, facts: Iterable[Fact],
                row_id: Callable[[Fact], int | None], summary: collections.Counter[str],
                progress: Progress | None) -> None:
    """Replace `source`'s facts with those whose image is in the store, in file order."""
    # The file is the truth for its facts: indexing it again replaces them.
    conn.execute("DELETE FROM facts WHERE source = ?", (source,))
    with BatchedInserter(conn, f"{source} facts", (
            "INSERT INTO facts (image_id, source, question_id, question, answer) "
            "VALUES (?, ?, ?, ?, ?)",), progress=progress) as inserter:
        for fact in facts:
            image_id = row_id(fact)
            if image_id is None:
                summary[f"{source}_facts_skipped"] += 1
                continue
            inserter.add((image_id, source, fact.question_id, fact.question, fact.answer))
            summary[f"{source}_facts"] += 1
