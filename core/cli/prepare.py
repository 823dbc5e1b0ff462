"""The parts of `prepare` beyond parsing: which downloaded files to index, and the summary."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from visinstruct.core.config import Config, SourceConfig
from visinstruct.core.pipeline.indexer import IndexSummary
from visinstruct.core.store.database import Store
from visinstruct.core.store.queries import status_counts
from visinstruct.core.store.scene_queries import images_by_source

_STORE_KEYS = ("images", "captions", "boxes", "images_with_boxes", "baseline_conversations",
               "baseline_images", "facts")


def downloaded_source(config: Config, which: str, data_dir: Path | None) -> SourceConfig:
    """Download the named sources ("coco,gqa,vqa") and return the source that indexes them."""
    from visinstruct.core.cli.download_progress import rich_progress
    from visinstruct.dataset.download import download_sources
    from visinstruct.dataset.download_qa import (
        download_gqa,
        download_vqa,
        parse_download_sources,
    )

    names = parse_download_sources(which)
    folder = data_dir or config.download.data_dir
    urls = config.download
    source = config.source
    with rich_progress() as progress:
        if "coco" in names:
            paths = download_sources(folder, coco_annotations_url=urls.coco_annotations_url,
                                     mix665k_url=urls.mix665k_url, progress=progress)
            by_name = {p.name: p for p in paths}
            source = replace(source, coco_captions=by_name.get("captions_train2017.json"),
                             coco_instances=by_name.get("instances_train2017.json"),
                             baseline=by_name.get("llava_v1_5_mix665k.json"))
        if "gqa" in names:
            fetched: dict[str, Any] = dict(download_gqa(
                folder, scene_graphs_url=urls.gqa_scene_graphs_url,
                questions_url=urls.gqa_questions_url, progress=progress))
            source = replace(source, **fetched)
        if "vqa" in names:
            fetched = dict(download_vqa(
                folder, questions_url=urls.vqa_questions_url,
                annotations_url=urls.vqa_annotations_url, progress=progress))
            source = replace(source, **fetched)
    return source


def prepare_report(store: Store, summary: IndexSummary, config: Config) -> dict[str, Any]:
    """What `prepare --json` prints: what was added, what the store now holds, where it is."""
    counts = status_counts(store, config.judge.threshold)
    held: dict[str, Any] = {k: counts[k] for k in _STORE_KEYS}
    held["images_by_source"] = images_by_source(store)
    return {"added": summary.__dict__, "store": held, "db": str(config.db)}
