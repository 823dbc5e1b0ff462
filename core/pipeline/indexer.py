"""Index the configured sources (COCO, mix665k baseline, GQA, VQAv2) into the store."""

from __future__ import annotations

import collections
import hashlib
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from visinstruct.core.config import Config, SourceConfig
from visinstruct.core.pipeline.index_scenes import FACT_SOURCE_KEYS, index_fact_sources
from visinstruct.core.records import BaselineConversation, Image
from visinstruct.core.sanitize.clean import clean_pair_text
from visinstruct.core.store.database import Store
from visinstruct.core.store.inserter import BatchedInserter, Progress


@dataclass(frozen=True)
class IndexSummary:
    """What one `prepare` added to the store."""

    images: int
    captions: int
    boxes: int
    baseline_conversations: int
    skipped_images: int
    baseline_counts: dict[str, int]
    gqa_images: int = 0
    objects: int = 0
    relations: int = 0
    facts: dict[str, int] = field(default_factory=dict)


def source_fingerprint(source: SourceConfig) -> str:
    """A short hash of the source files (path, size, mtime): a changed source gets indexed again."""
    parts = []
    for key in ("coco_captions", "coco_instances", "baseline", *FACT_SOURCE_KEYS):
        path = getattr(source, key)
        if path is None:
            parts.append(f"{key}=")
            continue
        stat = Path(path).stat()
        parts.append(f"{key}={Path(path).resolve()}:{stat.st_size}:{int(stat.st_mtime)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def index_sources(store: Store, source: SourceConfig,
                  progress: Progress | None = None) -> IndexSummary:
    """Read the sources and write them in one transaction: a bad file leaves the store as it was."""
    def work(conn: sqlite3.Connection) -> IndexSummary:
        counts: collections.Counter[str] = collections.Counter()
        baseline_ids: set[int] | None = None
        baseline_gqa: set[str] | None = None
        n_baseline = 0
        if source.baseline is not None:
            from visinstruct.dataset.llava import read_mix665k

            baseline_ids, baseline_gqa = set(), set()
            n_baseline = _index_baseline(conn, read_mix665k(Path(source.baseline), counts=counts,
                                                            gqa_ids=baseline_gqa),
                                         baseline_ids, progress)
        existing = {row[0] for row in conn.execute("SELECT id FROM images")}
        summary = {"images": 0, "captions": 0, "boxes": 0, "skipped": 0}
        if source.coco_captions is not None:
            from visinstruct.dataset.coco import read_coco

            images = read_coco(Path(source.coco_captions),
                               Path(source.coco_instances) if source.coco_instances else None,
                               split=_split_of(Path(source.coco_captions)))
            _index_images(conn, images, baseline_ids, existing, summary, progress)
        added = index_fact_sources(conn, source, baseline_gqa, progress)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('source_fingerprint', ?)",
                     (source_fingerprint(source),))
        return IndexSummary(
            images=summary["images"], captions=summary["captions"], boxes=summary["boxes"],
            baseline_conversations=n_baseline, skipped_images=summary["skipped"],
            baseline_counts=dict(counts), gqa_images=added["gqa_images"],
            objects=added["objects"], relations=added["relations"],
            facts={k: added[f"{k}_facts"] for k in ("vqa", "gqa")},
        )

    result: IndexSummary = store.write_sync(work)
    return result


def _split_of(path: Path) -> str:
    name = path.name
    for split in ("train2017", "val2017", "train2014", "val2014"):
        if split in name:
            return split
    return ""


def _index_baseline(conn: sqlite3.Connection, records: Iterable[BaselineConversation],
                    baseline_ids: set[int], progress: Progress | None) -> int:
    # The baseline file is the truth for the baseline: indexing it again replaces it.
    conn.execute("DELETE FROM baseline_conversations")
    with BatchedInserter(conn, "baseline", (
            "INSERT INTO baseline_conversations (image_id, task, record_id, pairs) "
            "VALUES (?, ?, ?, ?)",), progress=progress) as inserter:
        for record in records:
            baseline_ids.add(record.image_id)
            pairs = json.dumps([[p.question, p.answer] for p in record.pairs], ensure_ascii=False)
            inserter.add((record.image_id, record.task, record.record_id, pairs))
    return inserter.written


def _index_images(conn: sqlite3.Connection, images: Iterable[Image], only: set[int] | None,
                  existing: set[int], summary: dict[str, int], progress: Progress | None) -> None:
    with BatchedInserter(conn, "images", (
            "INSERT INTO images (id, file_name, width, height, split) VALUES (?, ?, ?, ?, ?)",
            "INSERT INTO captions (image_id, idx, text) VALUES (?, ?, ?)",
            "INSERT INTO boxes (image_id, idx, category, x1, y1, x2, y2, crowd) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"), progress=progress) as inserter:
        for image in images:
            if (only is not None and image.image_id not in only) or image.image_id in existing:
                summary["skipped"] += 1
                continue
            existing.add(image.image_id)
            inserter.add(
                (image.image_id, image.file_name, image.width, image.height, image.split),
                # Captions are data: valid Unicode, without `<image>` or control characters.
                [(image.image_id, i, clean_pair_text(text))
                 for i, text in enumerate(image.captions)],
                [(image.image_id, i, box.category, *box.bbox, int(box.crowd))
                 for i, box in enumerate(image.boxes)])
            summary["images"] += 1
            summary["captions"] += len(image.captions)
            summary["boxes"] += len(image.boxes)


def ensure_indexed(config: Config, store: Store) -> None:
    """Index the configured source unless this store already holds exactly it."""
    source = config.source
    if source.coco_captions is None and source.baseline is None and source.gqa_scene_graphs is None:
        return
    if store.get_meta("source_fingerprint") != source_fingerprint(config.source):
        index_sources(store, config.source)
