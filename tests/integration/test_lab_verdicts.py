"""The prompt lab records verdicts the way `evaluate` does: the picture and the configured
temperature."""

from __future__ import annotations

from pathlib import Path

from PIL import Image as PILImage

from tests.fakes.bedrock_server import BedrockServer
from tests.integration.test_evaluate import (  # noqa: F401 - `fake_fixture` is the `fake` fixture
    MODEL_ID,
    A,
    build_store,
    fake_fixture,
    pictures_in,
    write_config,
)
from visinstruct.core.config import load_config
from visinstruct.core.events import ignore
from visinstruct.core.lab.compare import compare_with_baseline
from visinstruct.core.lab.trials import call_context
from visinstruct.core.records import Pair
from visinstruct.core.store.database import Store
from visinstruct.core.store.queries import load_images
from visinstruct.core.text.prompt_versions import active_template


def test_a_lab_comparison_sends_the_picture_and_the_configured_temperature(
        tmp_path: Path, fake: BedrockServer) -> None:
    build_store(tmp_path / "store.db", tmp_path, ours=[A], baseline=[A])
    pictures = tmp_path / "train2017"
    pictures.mkdir()
    PILImage.new("RGB", (16, 12), (90, 60, 30)).save(pictures / f"{A:012d}.jpg", format="JPEG")
    config = load_config(write_config(tmp_path, images_dir=pictures),
                         {"evaluation.temperature": 0.55})
    with Store(config.db) as store:
        image = load_images(store, [A])[A]
        generation_id = int(store.scalar(
            "SELECT id FROM generations WHERE image_id = ? AND task = 'conversation'", (A,)))
        pairs = [Pair(q, a) for q, a in store.query(
            "SELECT question, answer FROM pairs WHERE generation_id = ?", (generation_id,))]
        with call_context(config, store, [config.evaluation.model], ignore) as ctx:
            comparison = compare_with_baseline(ctx, config, active_template(store, "evaluate"),
                                               image, "conversation", generation_id, pairs)

    assert comparison.ours is not None and comparison.baseline is not None
    requests = fake.script.requests(MODEL_ID)
    assert len(requests) == 2
    assert [pictures_in(r) for r in requests] == [1, 1]
    assert {r.json["temperature"] for r in requests} == {0.55}
