"""A headless run whose generator (SageMaker Messages) and judge (Bedrock Converse) see the
picture: the fakes decode what they receive, and a judge that looks decides what is kept."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image as PILImage

from tests.fakes.aws import aws_env, aws_env_vars
from tests.fakes.bedrock_server import BedrockServer
from tests.fakes.openai_server import OpenAIServer
from tests.fakes.sagemaker_server import SageMakerServer
from tests.fakes.scripting import Reply, Script
from tests.fakes.seeing import COLOURS, colour_of, pictures_in, seeing_generator, seeing_judge
from visinstruct.core.config import load_config
from visinstruct.core.errors import InputError
from visinstruct.core.lab.trials import run_lab
from visinstruct.core.pipeline.indexer import ensure_indexed
from visinstruct.core.review.samples import sample_detail
from visinstruct.core.store.database import Store
from visinstruct.core.text.prompts import load_prompt
from visinstruct.dataset import sample

REPO = Path(__file__).resolve().parents[2]
JUDGE_ID = "us.amazon.nova-lite-v1:0"
# The first three sample images: two pictures on disk (large), the third missing.
PICTURES = {990001: ("000000990001.jpg", "red"), 990002: ("000000990002.jpg", "blue")}
MISSING = (990003, "000000990003.jpg")


def write_pictures(folder: Path) -> None:
    folder.mkdir()
    for file_name, colour in PICTURES.values():
        PILImage.new("RGB", (1800, 1200), COLOURS[colour]).save(folder / file_name, quality=92)


def config_text(db: Path, images: Path, judge_vision: str = "") -> str:
    return f"""db = "{db}"
[source]
coco_captions = "{sample.captions_path()}"
coco_instances = "{sample.instances_path()}"
images_dir = "{images}"
limit = 3
[generation]
model = "vlm"
tasks = ["conversation"]
[judge]
model = "looker"
[models.vlm]
backend = "sagemaker"
endpoints = ["qwen-vl"]
schema = "messages"
vision = true
image_max_side = 512
[models.looker]
backend = "bedrock"
api = "converse"
model_id = "{JUDGE_ID}"
image_max_side = 384
{judge_vision}
"""


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "visinstruct.core.cli", *args],
                          capture_output=True, text=True, timeout=240, cwd=REPO,
                          env={**os.environ, **env})


def image_of(body: object) -> int:
    """Which sample image a request is about: its picture's colour tells."""
    pictures = pictures_in(body)
    assert len(pictures) == 1
    colour = colour_of(pictures[0])
    return next(image_id for image_id, (_, c) in PICTURES.items() if c == colour)


@pytest.mark.timeout(300)
def test_a_seeing_generator_and_judge_keep_what_is_true_of_the_picture(tmp_path: Path) -> None:
    images = tmp_path / "images"
    write_pictures(images)
    db, config = tmp_path / "run.db", tmp_path / "run.toml"
    config.write_text(config_text(db, images))
    generator, judge = Script(Reply(text=seeing_generator)), Script(Reply(text=seeing_judge))
    with SageMakerServer(generator, endpoints=("qwen-vl",)) as sagemaker, \
            BedrockServer(judge) as bedrock:
        env = aws_env_vars(sagemaker_url=sagemaker.url, bedrock_url=bedrock.url)
        result = cli("run", "--headless", "--json", "--config", str(config), env=env)
        status = cli("status", "--json", "--config", str(config), env=env)
        exported = cli("export", "--format", "jsonl", "--out", "-", "--config", str(config),
                       env=env)
        analyzed = cli("analyze", "--config", str(config), "--out", str(tmp_path / "report"),
                       env=env)

    assert result.returncode in (0, 1), result.stderr[-3000:]
    events = [json.loads(line) for line in result.stdout.splitlines()]
    finished = events[-1]
    assert finished["event"] == "RunFinished"
    assert (finished["done_units"], finished["total_units"], finished["failed_units"]) == (3, 3, 1)
    # The missing picture is named in the run's output and in status, and cost no call.
    unusable = [e for e in events if e["event"] == "PictureUnusable"]
    assert [(e["image_id"], Path(e["path"]).name, e["problem"]) for e in unusable] == [
        (MISSING[0], MISSING[1], "not found")]
    answered = [e for e in events if e["event"] == "CallFinished" and e["status"] == "ok"]
    assert [e["pictures"] for e in answered] == [1, 1, 1, 1]  # what the monitor counts
    report = json.loads(status.stdout)
    assert report["pictures_sent"] == 4
    assert report["pictures_unusable"]["count"] == 1
    assert MISSING[1] in report["pictures_unusable"]["files"][0]
    # Every request carried the right picture, bounded by its model's image_max_side.
    assert generator.count() == 2 and judge.count() == 2
    for body in generator.bodies():
        (picture,) = pictures_in(body)
        assert max(picture.size) == 512 and picture.size == (512, 341)
    for body in judge.bodies():
        (picture,) = pictures_in(body)
        assert max(picture.size) == 384
    assert sorted(image_of(b) for b in generator.bodies()) == sorted(PICTURES)
    assert sorted(image_of(b) for b in judge.bodies()) == sorted(PICTURES)
    with sqlite3.connect(db) as conn:
        calls = conn.execute("SELECT image_id, stage, pictures, prompt_version FROM llm_calls "
                             "WHERE status = 'ok' ORDER BY image_id, stage").fetchall()
        versions = dict(conn.execute("SELECT version, name FROM prompts").fetchall())
    assert {c[0] for c in calls} == set(PICTURES)
    assert all(pictures == 1 for _, _, pictures, _ in calls)
    assert {versions[c[3]] for c in calls} == {"conversation_vision", "judge_vision"}
    # The seeing judge kept the answer true of the picture and dropped the false one.
    assert exported.returncode == 0, exported.stderr[-2000:]
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    answers = {Path(r["image"]).name: [t["value"] for t in r["conversations"] if t["from"] == "gpt"]
               for r in records}
    assert answers == {file_name: [f"The middle of the photo is {colour}."]
                       for file_name, colour in PICTURES.values()}
    # analyze splits the judge figures by who saw the picture: here both always did.
    assert analyzed.returncode == 0, analyzed.stderr[-2000:]
    figures = json.loads((tmp_path / "report" / "figures.json").read_text())
    assert [(g["generator_saw"], g["judge_saw"], g["pairs"], g["kept"])
            for g in figures["sight"]] == [(True, True, 4, 2)]
    assert "did the generator and the judge see it" in (
        tmp_path / "report" / "report.md").read_text()
    # Review shows, per sample, that its generator and its judge saw the picture.
    with Store(db) as store:
        detail = sample_detail(store, 990001, "conversation", 7)
    assert detail is not None and (detail.generator_saw, detail.judge_saw) == (True, True)


@pytest.mark.timeout(300)
def test_with_the_judges_flag_off_no_picture_reaches_it(tmp_path: Path) -> None:
    images = tmp_path / "images"
    write_pictures(images)
    db, config = tmp_path / "run.db", tmp_path / "run.toml"
    config.write_text(config_text(db, images, judge_vision="vision = false"))
    generator, judge = Script(Reply(text=seeing_generator)), Script(Reply(text=seeing_judge))
    with SageMakerServer(generator, endpoints=("qwen-vl",)) as sagemaker, \
            BedrockServer(judge) as bedrock:
        env = aws_env_vars(sagemaker_url=sagemaker.url, bedrock_url=bedrock.url)
        result = cli("run", "--headless", "--json", "--config", str(config), env=env)
        analyzed = cli("analyze", "--config", str(config), "--out", str(tmp_path / "report"),
                       env=env)

    assert result.returncode in (0, 1), result.stderr[-3000:]
    assert judge.count() == 2 and all(pictures_in(b) == [] for b in judge.bodies())
    assert analyzed.returncode == 0, analyzed.stderr[-2000:]
    figures = json.loads((tmp_path / "report" / "figures.json").read_text())
    assert [(g["generator_saw"], g["judge_saw"], g["pairs"])
            for g in figures["sight"]] == [(True, False, 4)]
    with Store(db) as store:
        detail = sample_detail(store, 990002, "conversation", 7)
    assert detail is not None and (detail.generator_saw, detail.judge_saw) == (True, False)
    assert all(len(pictures_in(b)) == 1 for b in generator.bodies())
    with sqlite3.connect(db) as conn:
        judged = conn.execute("SELECT DISTINCT p.name, c.pictures FROM llm_calls c JOIN prompts p "
                              "ON p.version = c.prompt_version WHERE c.stage = 'judge'").fetchall()
    assert judged == [("judge", 0)]


def test_the_prompt_lab_runs_the_same_images_with_and_without_the_picture(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = tmp_path / "images"
    write_pictures(images)
    config_path = tmp_path / "run.toml"
    generator, judge = Script(Reply(text=seeing_generator)), Script(Reply(text=seeing_judge))
    with OpenAIServer(generator, models=("qwen-vl",)) as served, BedrockServer(judge) as bedrock:
        aws_env(monkeypatch, bedrock_url=bedrock.url)
        config_path.write_text(config_text(tmp_path / "run.db", images).replace(
            'backend = "sagemaker"\nendpoints = ["qwen-vl"]\nschema = "messages"',
            f'backend = "openai"\nbase_url = "{served.url}/v1"\nmodel = "qwen-vl"'))
        config = load_config(config_path)
        with Store(config.db) as store:
            ensure_indexed(config, store)
            with pytest.raises(InputError, match="vision = true"):
                run_lab(replace(config, source=replace(config.source, images_dir=None)), store,
                        load_prompt("conversation"), sorted(PICTURES), emit=lambda e: None,
                        picture_sides=True)
            result = run_lab(config, store, load_prompt("conversation"), sorted(PICTURES),
                             emit=lambda e: None, picture_sides=True)

    assert result.version == load_prompt("conversation_vision").version
    assert result.saved_version == load_prompt("conversation").version
    # With the picture the generator wrote one true and one false answer; the seeing judge
    # kept the true one. Without it, nothing about the colour could be said or kept.
    assert [(s.pairs, s.kept) for s in result.trial_samples] == [(2, 1), (2, 1)]
    assert [(s.pairs, s.kept) for s in result.saved_samples] == [(1, 0), (1, 0)]
    sent = sorted(len(pictures_in(body)) for body in generator.bodies())
    assert sent == [0, 0, 1, 1]
    assert all(len(pictures_in(body)) == 1 for body in judge.bodies())  # judged alike
