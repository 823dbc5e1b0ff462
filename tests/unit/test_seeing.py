"""Which stages see, the templates they use, and the plan's estimate of the pictures they send."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image as PILImage

from visinstruct.core.config import Config, load_config
from visinstruct.core.evaluation.verdicts import Pictures
from visinstruct.core.events import CallFinished, RunStarted
from visinstruct.core.pipeline.backlog import Backlog
from visinstruct.core.pipeline.indexer import ensure_indexed
from visinstruct.core.pipeline.plan import plan_run
from visinstruct.core.pipeline.seeing import Sight, picture_plan, stage_sees
from visinstruct.core.pipeline.tally import RunTally, calls_text
from visinstruct.core.records import Image
from visinstruct.core.store.database import Store
from visinstruct.dataset import sample

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"


def config_with(tmp_path: Path, *, images: bool = True, judge_vision: str = "",
                panel: str = "") -> Config:
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    path = tmp_path / "run.toml"
    path.write_text(f"""db = "{tmp_path / 'run.db'}"
[source]
coco_captions = "{sample.captions_path()}"
coco_instances = "{sample.instances_path()}"
{f'images_dir = "{folder}"' if images else ""}
[generation]
model = "vlm"
[judge]
model = "looker"
{panel}
[models.vlm]
backend = "openai"
base_url = "http://127.0.0.1:9/v1"
model = "Qwen/Qwen2.5-VL-7B-Instruct"
vision = true
image_max_side = 512
price_in_per_million = 1.0
[models.looker]
backend = "bedrock"
model_id = "{CLAUDE}"
price_in_per_million = 3.0
{judge_vision}
[models.reader]
backend = "scripted"
""")
    return load_config(path)


def test_a_stage_sees_only_with_a_pictures_folder_and_its_flag(tmp_path: Path) -> None:
    config = config_with(tmp_path)
    assert stage_sees(config, "vlm") and stage_sees(config, "looker")
    assert not stage_sees(config, "reader")
    blind = config_with(tmp_path, images=False)
    assert not stage_sees(blind, "vlm") and not Sight(blind).anyone
    off = config_with(tmp_path, judge_vision="vision = false")
    assert Sight(off).generation and not Sight(off).any_judge


def test_seeing_stages_use_the_vision_prompts_each_panel_member_its_own(tmp_path: Path) -> None:
    config = config_with(tmp_path, panel='models = ["looker", "reader"]')
    with Store(config.db) as store:
        backlog = Backlog.load(config, store)
    assert {t.name for t in backlog.templates.values()} == {
        "conversation_vision", "detail_vision", "complex_reasoning_vision"}
    assert backlog.judge_template.name == "judge_vision"
    assert backlog.member_templates is not None
    assert {n: t.name for n, t in backlog.member_templates.items()} == {
        "looker": "judge_vision", "reader": "judge"}
    blind = config_with(tmp_path, images=False)
    with Store(blind.db) as store:
        backlog = Backlog.load(blind, store)
    assert backlog.judge_template.name == "judge"
    assert {t.name for t in backlog.templates.values()} == {
        "conversation", "detail", "complex_reasoning"}


def test_the_plan_estimates_image_tokens_per_model_family(tmp_path: Path) -> None:
    config = config_with(tmp_path)
    with Store(config.db) as store:
        store.write_sync(lambda c: c.execute(
            "INSERT INTO images (id, file_name, width, height) VALUES (1, 'a.jpg', 640, 480)"))
        plan = picture_plan(config, store, generations=10, judgings=4)
    # Qwen at 512 x 384: 19 x 14 patches of 28; Claude at 640 x 480: 409 tokens each.
    assert plan.pictures == 14
    assert plan.tokens == 10 * 19 * 14 + 4 * (640 * 480 // 750)
    assert plan.cost_usd == pytest.approx((10 * 266 * 1.0 + 4 * 409 * 3.0) / 1e6)
    assert "about 14 sent" in plan.describe()
    blind = config_with(tmp_path, images=False)
    with Store(blind.db) as store:
        assert picture_plan(blind, store, 10, 4).describe() == ""


def test_the_start_dialogs_plan_names_the_pictures_it_would_send(tmp_path: Path) -> None:
    config = config_with(tmp_path)
    with Store(config.db) as store:
        ensure_indexed(config, store)
        made = plan_run(config, store)
    assert made.pictures is not None
    units = made.units_left
    assert made.pictures.pictures == 2 * units  # a generation and a judging per unit
    assert "Pictures: about" in made.describe() and "image input tokens" in made.describe()
    blind = config_with(tmp_path, images=False)
    with Store(blind.db) as store:
        assert "Pictures" not in plan_run(blind, store).describe()


def test_the_monitor_counts_the_pictures_answered_calls_carried() -> None:
    tally = RunTally()
    tally.add(RunStarted(1, 4, 0, 2, ("detail",), "vlm", "looker"), 0.0)
    for n, (status, pictures) in enumerate((("ok", 1), ("error", 1), ("ok", 1), ("ok", 0))):
        tally.add(CallFinished(n, "generate", 1, "detail", "vlm", "e", 1, status, 1.0, 5, 5,
                               pictures=pictures), 1.0)
    figures = tally.figures(2.0)
    assert figures.pictures_sent == 2
    assert calls_text(figures).endswith("· 2 pictures sent")
    assert "picture" not in calls_text(replace(figures, pictures_sent=0))


def test_an_evaluator_whose_flag_is_off_is_shown_no_picture(tmp_path: Path) -> None:
    config = config_with(tmp_path)
    PILImage.new("RGB", (900, 600), (200, 20, 20)).save(tmp_path / "images" / "a.jpg")
    image = Image(image_id=1, file_name="a.jpg", width=900, height=600)
    seeing = replace(config, evaluation=replace(config.evaluation, model="looker"))
    shown = Pictures(seeing).load(image)
    assert shown is not None and PILImage.open(io.BytesIO(shown)).size == (900, 600)
    blind = replace(seeing, models={**seeing.models, "looker": replace(
        seeing.models["looker"], vision=False)})
    assert Pictures(blind).load(image) is None
    small = replace(seeing, models={**seeing.models, "looker": replace(
        seeing.models["looker"], image_max_side=300)})
    shown = Pictures(small).load(image)
    assert shown is not None and PILImage.open(io.BytesIO(shown)).size == (300, 200)
