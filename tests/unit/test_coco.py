"""The COCO reader on the real annotation fixtures, LLaVA's own context file, and bad files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REAL_DATA
from visinstruct.core.errors import DataError
from visinstruct.core.records import Box, Image
from visinstruct.dataset.coco import read_coco

DATA = REAL_DATA
COCO = DATA / "coco"
SAMPLE300 = COCO / "captions_val2017_sample300.json"
VAL_INSTANCES = COCO / "instances_val2017_mini.json"
TRAIN_CAPTIONS = COCO / "captions_train2017_mini.json"
TRAIN_INSTANCES = COCO / "instances_train2017_mini.json"
LLAVA_CONTEXT = DATA / "llava" / "llava_bench_coco" / "caps_boxes_coco2014_val_80.jsonl"


def _by_id(images: list[Image]) -> dict[int, Image]:
    return {image.image_id: image for image in images}


def _llava_context() -> dict[int, dict[str, Any]]:
    lines = LLAVA_CONTEXT.read_text().splitlines()
    return {int(record["id"]): record for record in map(json.loads, lines)}


def _is_llava_box(bbox: Any) -> bool:
    """The shape of a box in LLaVA's context: [x1, y1, x2, y2], 0..1, at most 3 decimals."""
    return (
        len(bbox) == 4
        and all(isinstance(v, float) or v in (0, 1) for v in bbox)
        and all(0.0 <= v <= 1.0 and round(v, 3) == v for v in bbox)
        and bbox[0] <= bbox[2]
        and bbox[1] <= bbox[3]
    )


# --- the real fixtures ---------------------------------------------------------------------


def test_sample300_yields_every_image_and_caption_in_file_order() -> None:
    images = list(read_coco(SAMPLE300, split="val2017"))
    source = json.loads(SAMPLE300.read_text())

    assert [image.image_id for image in images] == [entry["id"] for entry in source["images"]]
    assert len(images) == 300
    assert sum(len(image.captions) for image in images) == 1514
    assert {image.split for image in images} == {"val2017"}
    assert all(image.boxes == () for image in images)
    first = images[0]
    assert (first.file_name, first.width, first.height) == ("000000397133.jpg", 640, 427)


def test_captions_are_stripped_of_whitespace_and_newlines() -> None:
    source = json.loads(SAMPLE300.read_text())
    raw = [entry["caption"] for entry in source["annotations"]]
    assert any(text != text.strip() for text in raw), "the fixture should have untidy captions"

    images = list(read_coco(SAMPLE300))
    captions = [text for image in images for text in image.captions]
    assert all(text == text.strip() and text for text in captions)
    assert Counter(captions) == Counter(text.strip() for text in raw)


def test_images_with_six_or_seven_captions_keep_them_all() -> None:
    counts = Counter(len(image.captions) for image in read_coco(SAMPLE300))
    assert counts == {5: 287, 6: 12, 7: 1}


def test_val_instances_give_boxes_to_exactly_the_79_mini_images() -> None:
    images = list(read_coco(SAMPLE300, VAL_INSTANCES))
    mini_ids = {entry["id"] for entry in json.loads(VAL_INSTANCES.read_text())["images"]}

    with_boxes = {image.image_id for image in images if image.boxes}
    assert len(with_boxes) == 79
    assert with_boxes == mini_ids
    assert sum(len(image.boxes) for image in images) == 624
    assert sum(box.crowd for image in images for box in image.boxes) == 5


def test_train_mini_pair_keeps_every_box_and_crowd_flag() -> None:
    images = list(read_coco(TRAIN_CAPTIONS, TRAIN_INSTANCES, split="train2017"))
    assert len(images) == 80
    assert sum(len(image.captions) for image in images) == 400
    assert sum(len(image.boxes) for image in images) == 739
    assert sum(box.crowd for image in images for box in image.boxes) == 8


def test_boxes_keep_the_instances_file_order_and_category_names() -> None:
    source = json.loads(VAL_INSTANCES.read_text())
    names = {entry["id"]: entry["name"] for entry in source["categories"]}
    expected = [names[a["category_id"]] for a in source["annotations"] if a["image_id"] == 397133]

    image = _by_id(list(read_coco(SAMPLE300, VAL_INSTANCES)))[397133]
    assert [box.category for box in image.boxes] == expected


def test_hand_computed_conversions_of_real_annotations() -> None:
    # Image 453302 is 500x375; annotation 80342 is a bottle at [60.72, 30.31, 209.04, 208.06]:
    # x1 = 60.72/500, y1 = 30.31/375, x2 = 269.76/500, y2 = 238.37/375.
    # Image 255165 is 640x480; annotation 908400255165 is a crowd of books at
    # [122, 270, 517, 209]: x1 = 0.1906..., x2 = 639/640 = 0.9984..., y2 = 479/480 = 0.9979...,
    # and y1 = 270/480 = 0.5625 exactly, a tie that Python's round() takes to the even 0.562.
    images = _by_id(list(read_coco(SAMPLE300, VAL_INSTANCES)))

    bottles = [box for box in images[453302].boxes if box.category == "bottle"]
    assert Box("bottle", (0.121, 0.081, 0.54, 0.636), False) in bottles
    books = [box for box in images[255165].boxes if box.crowd]
    assert books == [Box("book", (0.191, 0.562, 0.998, 0.998), True)]


def test_every_box_has_the_shape_of_llavas_context_boxes() -> None:
    theirs = [inst["bbox"] for record in _llava_context().values() for inst in record["instances"]]
    assert theirs and all(_is_llava_box(bbox) for bbox in theirs)

    ours = [
        box.bbox
        for pair in ((SAMPLE300, VAL_INSTANCES), (TRAIN_CAPTIONS, TRAIN_INSTANCES))
        for image in read_coco(*pair)
        for box in image.boxes
    ]
    assert len(ours) == 624 + 739
    assert all(isinstance(box, tuple) and _is_llava_box(box) for box in ours)


def test_the_llava_context_images_have_no_boxes_in_our_instance_fixtures() -> None:
    # Pins the fact the box comparison rests on: none of LLaVA's 80 context images has real
    # instances among the fixtures, so boxes are checked by shape and by hand-computed values.
    context_ids = set(_llava_context())
    for path in (VAL_INSTANCES, TRAIN_INSTANCES):
        instance_ids = {entry["id"] for entry in json.loads(path.read_text())["images"]}
        assert context_ids.isdisjoint(instance_ids)


def test_captions_match_llavas_context_for_the_13_shared_images() -> None:
    # LLaVA's context lists every caption, stripped, in the captions file's order (6 for 165257).
    context = _llava_context()
    images = _by_id(list(read_coco(SAMPLE300)))
    shared = sorted(context.keys() & images.keys())

    assert len(shared) == 13
    for image_id in shared:
        assert list(images[image_id].captions) == context[image_id]["captions"]
    assert len(images[165257].captions) == 6


def test_reading_is_done_before_the_first_image_is_asked_for(tmp_path: Path) -> None:
    # A bad file must raise when read_coco is called, not half-way through the caller's loop.
    captions = _write(tmp_path / "captions.json", _captions_file())
    instances = _write(tmp_path / "instances.json", _instances_file(category_id=99))
    with pytest.raises(DataError):
        read_coco(captions, instances)


# --- small files for the edge cases ---------------------------------------------------------


def _write(path: Path, content: Any) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def _captions_file(width: int = 200, height: int = 100) -> dict[str, Any]:
    return {
        "info": {},
        "images": [
            {"id": 7, "file_name": "000000000007.jpg", "width": width, "height": height},
            {"id": 3, "file_name": "000000000003.jpg", "width": 50, "height": 50},
        ],
        "annotations": [
            {"image_id": 7, "id": 1, "caption": "  A dog.\n"},
            {"image_id": 3, "id": 2, "caption": "A cat. "},
            {"image_id": 7, "id": 3, "caption": " \n"},
            {"image_id": 7, "id": 4, "caption": "Two dogs."},
        ],
    }


def _instances_file(category_id: int = 18, image_id: int = 7) -> dict[str, Any]:
    # Categories last and images ignored, as in the real train2017 file's key order.
    return {
        "info": {},
        "images": [],
        "annotations": [
            {
                "segmentation": [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]],
                "area": 10.0,
                "iscrowd": 0,
                "image_id": image_id,
                "bbox": [20.0, 10.0, 100.0, 50.0],
                "category_id": category_id,
                "id": 1,
            },
            {
                "segmentation": {"counts": [5, 6, 7], "size": [100, 200]},
                "area": 99.0,
                "iscrowd": 1,
                "image_id": image_id,
                "bbox": [-3, 0, 250, 100.4],
                "category_id": 1,
                "id": 2,
            },
        ],
        "categories": [
            {"supercategory": "animal", "id": 18, "name": "dog"},
            {"supercategory": "person", "id": 1, "name": "person"},
        ],
    }


def test_small_files_give_stripped_captions_and_clamped_boxes(tmp_path: Path) -> None:
    captions = _write(tmp_path / "captions.json", _captions_file())
    instances = _write(tmp_path / "instances.json", _instances_file())

    images = list(read_coco(captions, instances, split="train2017"))

    assert [image.image_id for image in images] == [7, 3]
    assert images[0].captions == ("A dog.", "Two dogs.")
    assert images[0].boxes == (
        Box("dog", (0.1, 0.1, 0.6, 0.6), False),
        Box("person", (0.0, 0.0, 1.0, 1.0), True),
    )
    assert images[1] == Image(3, "000000000003.jpg", 50, 50, ("A cat.",), (), "train2017")


def test_annotations_before_images_are_read_the_same(tmp_path: Path) -> None:
    shuffled = dict(reversed(list(_captions_file().items())))
    images = list(read_coco(_write(tmp_path / "captions.json", shuffled)))
    assert [image.captions for image in images] == [("A dog.", "Two dogs."), ("A cat.",)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"images": [{"id": 1,, }]}', "malformed JSON before byte"),
        ('{"images": [], "annotations": [', "malformed JSON"),
        ("", "malformed JSON"),
        ('{"images": [], "annotations": []} trailing', "malformed JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"images": {}, "annotations": []}', "'images' is not a list"),
        ('{"annotations": []}', "no 'images' list"),
        (
            '{"images": [{"id": "x", "file_name": "a.jpg", "width": 1, "height": 1}],'
            ' "annotations": []}',
            "id='x'",
        ),
    ],
)
def test_broken_captions_files_are_named_in_one_line(
    tmp_path: Path, content: str, message: str
) -> None:
    path = _write(tmp_path / "captions.json", content)
    with pytest.raises(DataError) as raised:
        read_coco(path)
    assert message in str(raised.value)
    assert str(path) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_missing_files_are_data_errors(tmp_path: Path) -> None:
    captions = _write(tmp_path / "captions.json", _captions_file())
    with pytest.raises(DataError, match="file not found"):
        read_coco(tmp_path / "nope.json")
    with pytest.raises(DataError, match="instances.json: file not found"):
        read_coco(captions, tmp_path / "instances.json")


def test_an_instances_file_given_as_captions_is_refused() -> None:
    with pytest.raises(DataError, match="no 'caption': this is an instances file"):
        read_coco(VAL_INSTANCES)


def test_a_captions_file_given_as_instances_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no 'bbox': this is a captions file"):
        read_coco(SAMPLE300, SAMPLE300)
    # A captions file with no annotations at all still lacks the categories.
    empty = _write(tmp_path / "empty.json", {"images": [], "annotations": []})
    with pytest.raises(DataError, match="no 'categories' list"):
        read_coco(SAMPLE300, empty)


def test_boxes_for_an_image_not_in_the_captions_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="image id 453302, which is not in the captions file"):
        read_coco(TRAIN_CAPTIONS, VAL_INSTANCES)
    captions = _write(tmp_path / "captions.json", _captions_file())
    instances = _write(tmp_path / "instances.json", _instances_file(image_id=8))
    with pytest.raises(DataError, match="image id 8"):
        read_coco(captions, instances)


def test_an_unknown_category_id_is_refused(tmp_path: Path) -> None:
    captions = _write(tmp_path / "captions.json", _captions_file())
    instances = _write(tmp_path / "instances.json", _instances_file(category_id=99))
    with pytest.raises(DataError, match="category id 99"):
        read_coco(captions, instances)


@pytest.mark.parametrize(("width", "height"), [(0, 100), (200, 0)])
def test_a_zero_size_image_with_boxes_is_refused(tmp_path: Path, width: int, height: int) -> None:
    captions = _write(tmp_path / "captions.json", _captions_file(width, height))
    instances = _write(tmp_path / "instances.json", _instances_file())
    with pytest.raises(DataError, match="image id 7 has boxes but a zero size"):
        read_coco(captions, instances)


def test_a_zero_size_image_without_boxes_is_fine(tmp_path: Path) -> None:
    captions = _write(tmp_path / "captions.json", _captions_file(0, 0))
    assert [image.width for image in read_coco(captions)] == [0, 50]


def test_a_box_that_is_not_four_numbers_is_refused(tmp_path: Path) -> None:
    content = _instances_file()
    content["annotations"][0]["bbox"] = [1, 2, 3]
    captions = _write(tmp_path / "captions.json", _captions_file())
    with pytest.raises(DataError, match="not four numbers"):
        read_coco(captions, _write(tmp_path / "instances.json", content))


def test_malformed_instances_json_is_a_data_error(tmp_path: Path) -> None:
    captions = _write(tmp_path / "captions.json", _captions_file())
    text = json.dumps(_instances_file())
    instances = _write(tmp_path / "instances.json", text[: len(text) // 2])
    with pytest.raises(DataError, match=r"instances\.json: malformed JSON before byte \d+"):
        read_coco(captions, instances)
