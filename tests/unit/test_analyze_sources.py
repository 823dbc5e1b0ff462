"""Analysis by source: a slice per source, and CHAIR on GQA images checks scene graph names."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from visinstruct.core.analysis.figures import ALL, analyze
from visinstruct.core.config import SourceConfig
from visinstruct.core.pipeline.indexer import index_sources
from visinstruct.core.store.database import Store
from visinstruct.dataset import sample


def add_generation(conn: sqlite3.Connection, image_id: int, pairs: list[tuple[str, str]]) -> None:
    cursor = conn.execute(
        "INSERT INTO generations (image_id, task, prompt_version, model, status, purpose, "
        "created_at) VALUES (?, 'conversation', 'v1', 'm', 'ok', 'run', ?)",
        (image_id, time.time()))
    for idx, (question, answer) in enumerate(pairs):
        pair = conn.execute("INSERT INTO pairs (generation_id, idx, question, answer) "
                            "VALUES (?, ?, ?, ?)", (cursor.lastrowid, idx, question, answer))
        conn.execute("INSERT INTO judgements (pair_id, generation_id, score, prompt_version, "
                     "model, created_at) VALUES (?, ?, 9, 'j', 'm', ?)",
                     (pair.lastrowid, cursor.lastrowid, time.time()))


def test_figures_per_source_and_gqa_grounding_uses_object_names(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        index_sources(store, SourceConfig(
            coco_captions=sample.captions_path(), coco_instances=sample.instances_path(),
            gqa_scene_graphs=sample.gqa_scene_graphs_path()))
        park = int(store.scalar("SELECT id FROM images WHERE source_id = '2390002'"))
        store.write_sync(lambda conn: (
            # The park scene has a dog, a bench, a tree, grass and a ball, but no mug or cat.
            add_generation(conn, park, [("What is there?", "A dog sits by the bench."),
                                        ("And else?", "A mug and a cat near the tree.")]),
            add_generation(conn, 990002, [("What is the man doing?", "He throws a frisbee.")])))
        figures = analyze(store, 7)
    ours = figures.datasets["ours"]
    assert {"coco", "gqa"} <= set(figures.slices)
    assert ours["gqa"].pairs == 2 and ours["coco"].pairs == 1 and ours[ALL].pairs == 3
    gqa = ours["gqa"].grounding
    # Mentions: dog, bench | mug, tree (cat is no object name of any GQA scene here).
    assert (gqa.mentions, gqa.hallucinated) == (4, 1)
    assert dict(gqa.top_hallucinated) == {"mug": 1}


def test_one_source_has_no_source_slices(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        index_sources(store, SourceConfig(coco_captions=sample.captions_path()))
        store.write_sync(lambda conn: add_generation(conn, 990002, [("Q?", "A dog.")]))
        assert "coco" not in analyze(store, 7).slices


def test_short_answers_are_not_counted_as_unjudged(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        index_sources(store, SourceConfig(coco_captions=sample.captions_path()))

        def write(conn: sqlite3.Connection) -> None:
            add_generation(conn, 990002, [("Q?", "A dog.")])
            cursor = conn.execute(
                "INSERT INTO generations (image_id, task, prompt_version, model, status, purpose, "
                "created_at) VALUES (990003, 'short_answer', 's', 'facts', 'ok', 'run', 0)")
            conn.execute("INSERT INTO pairs (generation_id, idx, question, answer) "
                         "VALUES (?, 0, 'What color is the bus?', 'red')", (cursor.lastrowid,))

        store.write_sync(write)
        figures = analyze(store, 7)
    assert figures.judge.histogram["unjudged"] == 0 and figures.judge.pairs == 1
    assert figures.datasets["ours"]["short_answer"].pairs == 1  # kept, with no judge
