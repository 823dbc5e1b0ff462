"""The bundled demo data is well formed, self-consistent and shaped like the real files."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from visinstruct.dataset import sample

IMAGE_IDS = list(range(990001, 990025))
VQA_SUFFIX = "\nAnswer the question using a single word or phrase."
DETAIL_WORDS = re.compile(r"\b(describe|description|detail|detailed)\b", re.IGNORECASE)


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def captions() -> dict[str, Any]:
    return _load(sample.captions_path())


@pytest.fixture(scope="module")
def instances() -> dict[str, Any]:
    return _load(sample.instances_path())


@pytest.fixture(scope="module")
def baseline() -> list[dict[str, Any]]:
    return _load(sample.baseline_path())


def _image_records(baseline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [record for record in baseline if "image" in record]


def _task_of(record: dict[str, Any]) -> str:
    """Which kind of baseline record this is: vqa, conversation, detail or complex_reasoning."""
    turns = record["conversations"]
    first_question = turns[0]["value"]
    if first_question.endswith(VQA_SUFFIX):
        return "vqa"
    if len(turns) >= 6:
        return "conversation"
    if DETAIL_WORDS.search(first_question.replace("<image>", "")):
        return "detail"
    return "complex_reasoning"


def test_paths_point_into_the_sample_package() -> None:
    for path in (sample.captions_path(), sample.instances_path(), sample.baseline_path()):
        assert path.is_file()
        assert path.parent == sample.SAMPLE_DIR


def test_captions_file_has_the_coco_layout(captions: dict[str, Any]) -> None:
    assert list(captions) == ["info", "licenses", "images", "annotations"]
    license_ids = {entry["id"] for entry in captions["licenses"]}
    for image in captions["images"]:
        assert set(image) == {"license", "file_name", "height", "width", "id"}
        assert image["license"] in license_ids
        assert image["file_name"] == f"{image['id']:012d}.jpg"
        assert image["width"] > 0 and image["height"] > 0
    for annotation in captions["annotations"]:
        assert set(annotation) == {"image_id", "id", "caption"}


def test_there_are_24_images_with_the_reserved_ids(
    captions: dict[str, Any], instances: dict[str, Any]
) -> None:
    assert [image["id"] for image in captions["images"]] == IMAGE_IDS
    assert instances["images"] == captions["images"]


def test_every_image_has_five_clean_distinct_captions(captions: dict[str, Any]) -> None:
    by_image: dict[int, list[str]] = defaultdict(list)
    for annotation in captions["annotations"]:
        by_image[annotation["image_id"]].append(annotation["caption"])
    assert sorted(by_image) == IMAGE_IDS
    for image_id, texts in by_image.items():
        assert len(texts) == 5, image_id
        assert len(set(texts)) == 5, image_id
        for text in texts:
            assert text and text == text.strip(), (image_id, text)
    caption_ids = [annotation["id"] for annotation in captions["annotations"]]
    assert len(caption_ids) == len(set(caption_ids))


def test_categories_are_the_80_coco_categories(instances: dict[str, Any]) -> None:
    categories = instances["categories"]
    assert len(categories) == 80
    assert {category["id"] for category in categories} == set(range(1, 91)) - {
        12, 26, 29, 30, 45, 66, 68, 69, 71, 83
    }
    by_id = {category["id"]: category for category in categories}
    assert by_id[1] == {"supercategory": "person", "id": 1, "name": "person"}
    assert by_id[18]["name"] == "dog" and by_id[18]["supercategory"] == "animal"
    assert by_id[67]["name"] == "dining table"
    assert by_id[90]["name"] == "toothbrush" and by_id[90]["supercategory"] == "indoor"
    assert len({category["name"] for category in categories}) == 80


def test_every_box_is_inside_its_image_with_a_known_category(instances: dict[str, Any]) -> None:
    assert list(instances) == ["info", "licenses", "images", "annotations", "categories"]
    sizes = {image["id"]: (image["width"], image["height"]) for image in instances["images"]}
    category_ids = {category["id"] for category in instances["categories"]}
    annotation_ids = [annotation["id"] for annotation in instances["annotations"]]
    assert len(annotation_ids) == len(set(annotation_ids))
    for annotation in instances["annotations"]:
        width, height = sizes[annotation["image_id"]]
        x, y, w, h = annotation["bbox"]
        assert all(isinstance(value, float) for value in annotation["bbox"])
        assert w > 0 and h > 0, annotation["id"]
        assert x >= 0 and y >= 0 and x + w <= width and y + h <= height, annotation["id"]
        assert annotation["category_id"] in category_ids
        assert 0 < annotation["area"] <= w * h


def test_each_image_has_three_to_eight_boxes(instances: dict[str, Any]) -> None:
    counts = Counter(annotation["image_id"] for annotation in instances["annotations"])
    assert sorted(counts) == IMAGE_IDS
    assert all(3 <= count <= 8 for count in counts.values()), counts


def test_segmentations_match_the_crowd_flag(instances: dict[str, Any]) -> None:
    sizes = {image["id"]: (image["width"], image["height"]) for image in instances["images"]}
    crowd = [annotation for annotation in instances["annotations"] if annotation["iscrowd"] == 1]
    assert 1 <= len(crowd) <= 3
    for annotation in instances["annotations"]:
        assert annotation["iscrowd"] in (0, 1)
        width, height = sizes[annotation["image_id"]]
        x, y, w, h = annotation["bbox"]
        segmentation = annotation["segmentation"]
        if annotation["iscrowd"]:
            # Uncompressed RLE: run lengths over the whole image in column-major order.
            assert segmentation["size"] == [height, width]
            assert sum(segmentation["counts"]) == width * height
            assert sum(segmentation["counts"][1::2]) == annotation["area"]
        else:
            for polygon in segmentation:
                assert len(polygon) >= 6 and len(polygon) % 2 == 0
                xs, ys = polygon[0::2], polygon[1::2]
                assert x - 0.01 <= min(xs) and max(xs) <= x + w + 0.01
                assert y - 0.01 <= min(ys) and max(ys) <= y + h + 0.01


def test_objects_named_in_captions_have_boxes(
    captions: dict[str, Any], instances: dict[str, Any]
) -> None:
    names = sorted(
        (category["name"] for category in instances["categories"]), key=len, reverse=True
    )
    id_of = {category["name"]: category["id"] for category in instances["categories"]}
    boxed: dict[int, set[int]] = defaultdict(set)
    for annotation in instances["annotations"]:
        boxed[annotation["image_id"]].add(annotation["category_id"])
    for annotation in captions["annotations"]:
        text = annotation["caption"].lower()
        # Longest names first, so "teddy bear" is not also read as "bear".
        for name in names:
            pattern = re.compile(rf"\b{re.escape(name)}(s|es)?\b")
            if pattern.search(text):
                assert id_of[name] in boxed[annotation["image_id"]], (annotation["caption"], name)
                text = pattern.sub(" ", text)


def test_every_image_has_the_three_baseline_tasks(baseline: list[dict[str, Any]]) -> None:
    tasks: dict[str, Counter[str]] = defaultdict(Counter)
    for record in _image_records(baseline):
        tasks[record["id"]][_task_of(record)] += 1
    assert sorted(tasks) == [f"{image_id:012d}" for image_id in IMAGE_IDS]
    for record_id, counter in tasks.items():
        assert counter["conversation"] == 1, record_id
        assert counter["detail"] == 1, record_id
        assert counter["complex_reasoning"] == 1, record_id
    assert sum(counter["vqa"] for counter in tasks.values()) == 2


def test_baseline_records_have_the_mix665k_shape(baseline: list[dict[str, Any]]) -> None:
    assert isinstance(baseline, list)
    for record in _image_records(baseline):
        assert set(record) == {"id", "image", "conversations"}
        assert re.fullmatch(r"\d{12}", record["id"])
        assert record["image"] == f"coco/train2017/{record['id']}.jpg"
    text_only = [record for record in baseline if "image" not in record]
    assert len(text_only) == 1
    assert set(text_only[0]) == {"id", "conversations"}


def test_turns_alternate_starting_with_human(baseline: list[dict[str, Any]]) -> None:
    for record in baseline:
        turns = record["conversations"]
        assert len(turns) >= 2 and len(turns) % 2 == 0, record["id"]
        for index, turn in enumerate(turns):
            assert set(turn) == {"from", "value"}
            assert turn["from"] == ("human" if index % 2 == 0 else "gpt"), record["id"]
            assert turn["value"] and turn["value"] == turn["value"].strip(), record["id"]


def test_image_token_appears_once_at_an_end_of_the_first_question(
    baseline: list[dict[str, Any]],
) -> None:
    for record in baseline:
        joined = "".join(turn["value"] for turn in record["conversations"])
        if "image" not in record:
            assert "<image>" not in joined
            continue
        assert joined.count("<image>") == 1, record["id"]
        first_question = record["conversations"][0]["value"]
        assert first_question.startswith("<image>\n") or first_question.endswith("\n<image>")


def test_task_records_have_the_expected_length(baseline: list[dict[str, Any]]) -> None:
    for record in _image_records(baseline):
        turns = record["conversations"]
        task = _task_of(record)
        if task == "conversation":
            assert 3 <= len(turns) // 2 <= 4, record["id"]
        elif task == "vqa":
            assert len(turns) == 2 and len(turns[1]["value"].split()) <= 3
        else:
            assert len(turns) == 2, record["id"]
        if task == "complex_reasoning":
            sentences = re.findall(r"[.!?](?:\s|$)", turns[1]["value"])
            assert 3 <= len(sentences) <= 5, record["id"]
