"""GQA and VQAv2 as sources: prepare, status, a run over the fake SageMaker fleet, short answers."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from visinstruct.core.errors import ExitCode
from visinstruct.core.export.validate import validate_llava_file
from visinstruct.core.store.database import Store
from visinstruct.core.store.schema import MIGRATIONS
from visinstruct.dataset import sample
from visinstruct.tests.fakes.aws import aws_env_vars
from visinstruct.tests.fakes.model_replies import prompt_text, reply_to_request
from visinstruct.tests.fakes.sagemaker_server import SageMakerServer
from visinstruct.tests.fakes.scripting import Reply, Script

CliResult = tuple[int, str, str]
RunCli = Callable[..., CliResult]
GQA_IDS = {"2390001", "2390002", "n990003", "2390004"}


def four_files_source(limit: int = 0) -> str:
    return f"""
[source]
coco_captions = "{sample.captions_path()}"
coco_instances = "{sample.instances_path()}"
gqa_scene_graphs = "{sample.gqa_scene_graphs_path()}"
gqa_questions = "{sample.gqa_questions_path()}"
vqa_questions = "{sample.vqa_questions_path()}"
vqa_annotations = "{sample.vqa_annotations_path()}"
limit = {limit}
"""


def status(run_cli: RunCli, db: Path) -> dict[str, Any]:
    code, out, err = run_cli("status", "--db", db, "--json")
    assert code == ExitCode.OK, err
    report: dict[str, Any] = json.loads(out)
    return report


def test_prepare_with_all_four_files_indexes_both_sources(run_cli: RunCli, tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    code, out, err = run_cli(
        "prepare", "--db", db, "--json",
        "--coco-captions", sample.captions_path(), "--coco-instances", sample.instances_path(),
        "--gqa-scene-graphs", sample.gqa_scene_graphs_path(),
        "--gqa-questions", sample.gqa_questions_path(),
        "--vqa-questions", sample.vqa_questions_path(),
        "--vqa-annotations", sample.vqa_annotations_path())
    assert code == ExitCode.OK, err
    added = json.loads(out)["added"]
    # 11 GQA questions, one on an image with no scene graph; 10 VQAv2 questions.
    assert added["gqa_images"] == 4 and added["facts"] == {"vqa": 10, "gqa": 10}
    report = status(run_cli, db)
    assert report["images_by_source"] == {"coco": 24, "gqa": 4}
    assert report["facts"] == 20 and report["images"] == 28
    with sqlite3.connect(db) as conn:
        ids = {r[0] for r in conn.execute("SELECT source_id FROM images WHERE source = 'gqa'")}
        assert ids == GQA_IDS
        laptop = conn.execute("SELECT x1, y1, x2, y2, attributes FROM objects "
                              "WHERE object_key = '3900011'").fetchone()
        # x 40, y 150, w 180, h 120 on a 500 x 375 image.
        assert laptop == (0.08, 0.4, 0.44, 0.72, '["silver", "open"]')
        assert conn.execute("SELECT COUNT(*) FROM relations").fetchone()[0] == 16
    # Prepare again: nothing new, nothing doubled.
    code, out, err = run_cli("prepare", "--db", db, "--json",
                             "--gqa-scene-graphs", sample.gqa_scene_graphs_path(),
                             "--gqa-questions", sample.gqa_questions_path())
    assert code == ExitCode.OK, err
    assert status(run_cli, db)["images_by_source"] == {"coco": 24, "gqa": 4}
    assert status(run_cli, db)["facts"] == 20


def test_with_a_baseline_only_its_gqa_images_are_indexed(run_cli: RunCli, tmp_path: Path) -> None:
    baseline = tmp_path / "mix.json"
    turns = [{"from": "human", "value": "<image>\nWhat is on the table?\nAnswer the question "
              "using a single word or phrase."}, {"from": "gpt", "value": "Laptop"}]
    baseline.write_text(json.dumps([
        {"id": "2390001", "image": "gqa/images/2390001.jpg", "conversations": turns},
        {"id": "n990003", "image": "gqa/images/n990003.jpg", "conversations": turns},
        {"id": "n1", "image": "ocr_vqa/images/1.jpg", "conversations": turns}]))
    db = tmp_path / "s.db"
    code, _, err = run_cli("prepare", "--db", db, "--baseline", baseline,
                           "--gqa-scene-graphs", sample.gqa_scene_graphs_path(),
                           "--gqa-questions", sample.gqa_questions_path())
    assert code == ExitCode.OK, err
    report = status(run_cli, db)
    assert report["images_by_source"] == {"coco": 0, "gqa": 2}
    assert report["facts"] == 4 + 3  # the facts of 2390001 and n990003 only


@pytest.mark.parametrize(("flag", "path_text", "fix"), [
    ("--gqa-scene-graphs", "[1, 2]", "scene graphs"),
    ("--gqa-scene-graphs", '{"1": {"width": 10, "height": 10, "objects": {"a": {"x": 1}}}}',
     "'name'"),
    ("--gqa-scene-graphs", '{"1": {"width": 10, "height"', "malformed JSON"),
])
def test_bad_gqa_file_exits_2_naming_it(run_cli: RunCli, tmp_path: Path, flag: str,
                                        path_text: str, fix: str) -> None:
    bad = tmp_path / "bad_sceneGraphs.json"
    bad.write_text(path_text)
    db = tmp_path / "s.db"
    code, _, err = run_cli("prepare", "--db", db, flag, bad)
    assert code == ExitCode.BAD_INPUT
    assert str(bad) in err and fix in err
    assert len(err.strip().splitlines()) == 1


def test_bad_vqa_files_exit_2_naming_the_file(run_cli: RunCli, tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    code, _, err = run_cli("prepare", "--db", db, "--coco-captions", sample.captions_path(),
                           "--vqa-questions", sample.vqa_questions_path(),
                           "--vqa-annotations", sample.vqa_questions_path())
    assert code == ExitCode.BAD_INPUT
    assert str(sample.vqa_questions_path()) in err and "annotations" in err
    code, _, err = run_cli("prepare", "--db", db, "--coco-captions", sample.captions_path(),
                           "--vqa-questions", sample.vqa_questions_path())
    assert code == ExitCode.BAD_INPUT and "vqa_annotations" in err


def test_store_of_migration_1_and_4_alone_indexes_sources(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from visinstruct.core.config import SourceConfig
    from visinstruct.core.pipeline.indexer import index_sources
    from visinstruct.core.store import database, schema

    mine = tuple(m for m in MIGRATIONS if m[0] in (1, 4))
    monkeypatch.setattr(schema, "MIGRATIONS", mine)
    monkeypatch.setattr(database, "MIGRATIONS", mine)
    with Store(tmp_path / "s.db") as store:
        summary = index_sources(store, SourceConfig(
            gqa_scene_graphs=sample.gqa_scene_graphs_path(),
            gqa_questions=sample.gqa_questions_path()))
        assert summary.gqa_images == 4 and summary.facts["gqa"] == 10


def expected_gqa_context() -> dict[str, list[str]]:
    """Per GQA scene: each object with its attributes, each relation triple, each fact."""
    scenes = json.loads(sample.gqa_scene_graphs_path().read_text())
    questions = json.loads(sample.gqa_questions_path().read_text())
    expected: dict[str, list[str]] = {}
    for scene_id, scene in scenes.items():
        objects = scene["objects"]
        # The first line names the scene uniquely: its place, or its first object line.
        labels = {"location": "Place", "weather": "Weather"}
        texts = [", ".join(f"{labels[k]}: {scene[k]}" for k in labels if k in scene)
                 ] if "location" in scene else []

        def described(body: dict[str, Any]) -> str:
            return " ".join([*body["attributes"], body["name"]])

        for body in objects.values():
            attributes = f" ({', '.join(body['attributes'])})" if body["attributes"] else ""
            texts.append(f"\n{body['name']}{attributes}")
            texts.extend(f"{described(body)} {r['name']} {described(objects[r['object']])}"
                         for r in body["relations"])
        texts.extend(f"Q: {q['question']} A: {q['answer']}" for q in questions.values()
                     if q["imageId"] == scene_id)
        expected[scene_id] = texts
    return expected


def fleet_config(tmp_path: Path, db: Path, tasks: str = "") -> Path:
    config = tmp_path / "run.toml"
    config.write_text(f"""db = "{db}"
{four_files_source()}
[generation]
model = "mixtral"
{tasks}
[judge]
model = "mixtral"
[models.mixtral]
backend = "sagemaker"
endpoints = ["mixtral-a", "mixtral-b"]
schema = "tgi"
max_in_flight = 4
read_timeout = 10
""")
    return config


@pytest.mark.timeout(300)
def test_run_over_the_fleet_sends_scene_graphs_and_facts_and_exports_gqa_paths(
        run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(Reply(text=reply_to_request))
    with SageMakerServer(script, endpoints=("mixtral-a", "mixtral-b")) as server:
        for key, value in aws_env_vars(sagemaker_url=server.url).items():
            monkeypatch.setenv(key, value)
        db = tmp_path / "run.db"
        code, _, err = run_cli("run", "--headless", "--json",
                               "--config", fleet_config(tmp_path, db), "--set",
                               'generation.tasks=["conversation", "detail"]')
        assert code == ExitCode.OK, err[-3000:]
        prompts = [prompt_text(body) for body in script.bodies()]
    generation = [p for p in prompts if "\nPair 1\n" not in p]
    judging = [p for p in prompts if "\nPair 1\n" in p]
    assert len(generation) == 28 * 2 and len(judging) == 28 * 2
    for group in (generation, judging):
        for scene_id, expected in expected_gqa_context().items():
            # Each GQA image is asked about in two tasks: both prompts hold its whole graph.
            prompts_of_scene = [p for p in group if expected[0] in p]
            assert len(prompts_of_scene) == 2, scene_id
            for prompt in prompts_of_scene:
                missing = [text for text in expected if text not in prompt]
                assert not missing, (scene_id, missing)
                assert "scene graph" in prompt  # the prompt says what the context holds
        frisbee = [p for p in group if "A man throwing a frisbee to his dog" in p]
        assert frisbee and all("Q: What is the man throwing? A: frisbee" in p for p in frisbee)
    out = tmp_path / "out.json"
    code, _, err = run_cli("export", "--db", db, "--out", out, "--threshold", "1")
    assert code == ExitCode.OK, err
    records = json.loads(out.read_text())
    gqa = [r for r in records if r["image"].startswith("gqa/")]
    assert {r["id"] for r in gqa} == GQA_IDS
    assert all(r["image"] == f"gqa/images/{r['id']}.jpg" for r in gqa)
    assert validate_llava_file(out).ok


@pytest.mark.timeout(300)
def test_short_answer_task_makes_mix665k_records_without_a_model_call(
        run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(Reply(text=reply_to_request))
    with SageMakerServer(script, endpoints=("mixtral-a", "mixtral-b")) as server:
        for key, value in aws_env_vars(sagemaker_url=server.url).items():
            monkeypatch.setenv(key, value)
        db = tmp_path / "run.db"
        config = fleet_config(tmp_path, db)
        code, out, err = run_cli("run", "--headless", "--json", "--config", config,
                                 "--set", 'generation.tasks=["short_answer"]')
        assert code == ExitCode.OK, err[-3000:]
        assert script.count() == 0
        finished = json.loads(out.splitlines()[-1])
        assert finished["done_units"] == finished["total_units"] == 28
        assert finished["calls"] == 0
        # A second run finds everything done and still calls nothing.
        code, out, err = run_cli("run", "--headless", "--json", "--config", config,
                                 "--set", 'generation.tasks=["short_answer"]')
        assert code == ExitCode.OK and script.count() == 0
    out = tmp_path / "short.json"
    code, _, err = run_cli("export", "--db", db, "--out", out)
    assert code == ExitCode.OK, err
    records = json.loads(out.read_text())
    assert validate_llava_file(out).ok
    # One record per image with facts: 5 COCO images with VQAv2 facts, 4 GQA scenes.
    assert len(records) == 9
    by_id = {r["id"]: r for r in records}
    assert by_id["000000990002"] == {
        "id": "000000990002", "image": "coco/train2017/000000990002.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat is the man throwing?\n"
                                       "Answer the question using a single word or phrase."},
            {"from": "gpt", "value": "frisbee"},
            {"from": "human", "value": "What color is the dog?"},
            {"from": "gpt", "value": "brown"},
            {"from": "human", "value": "Is this a park?"},
            {"from": "gpt", "value": "yes"}]}
    laptop = by_id["2390001"]
    assert laptop["image"] == "gqa/images/2390001.jpg"
    questions = [t["value"] for t in laptop["conversations"][::2]]
    assert questions == [("<image>\nWhat color is the laptop?\nAnswer the question using a "
                         "single word or phrase."),
                         "Is the mug to the left or to the right of the laptop?",
                         "What is the laptop on?", "Is there a mug on the table?"]
    report = status(run_cli, db)
    assert report["kept_pairs"] == 20 and report["unjudged_pairs"] == 0
