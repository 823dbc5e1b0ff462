"""The one classifier of mix665k records, and the validator of records carried into a mix."""

from __future__ import annotations

import pytest

from tests.mix_kinds import coco, every_kind, turns
from visinstruct.core.export.validate import check_mix_record
from visinstruct.dataset.mix_parts import (
    LLAVA_INSTRUCT,
    MALFORMED,
    PARTS,
    SHAREGPT,
    UNCLASSIFIED,
    place_record,
)


def test_every_kind_of_record_lands_in_its_part() -> None:
    wrong = [(part, place_record(record).part, record) for part, record in every_kind()
             if place_record(record).part != part]
    assert wrong == []
    placed = {part for part, _ in every_kind()}
    assert set(PARTS) | {UNCLASSIFIED, MALFORMED} == placed


def test_gpt4_records_carry_their_task_for_prepare() -> None:
    tasks = [place_record(r).task for part, r in every_kind() if part == LLAVA_INSTRUCT]
    assert sorted(tasks) == ["complex_reasoning"] * 2 + ["conversation"] * 2 + ["detail"] * 2


def test_only_the_academic_sets_are_kept_as_they_are() -> None:
    assert {name for name, part in PARTS.items() if not part.academic} == {
        LLAVA_INSTRUCT, SHAREGPT}
    assert all(part.license and part.link.startswith("https://") for part in PARTS.values())


@pytest.mark.parametrize("record", [
    "not an object", {"id": "x", "image": 5, "conversations": []},
    {"id": "x", "image": "coco/train2017/abc.jpg", "conversations": turns("<image>\nQ", "A")},
    {"id": "x", "model": ""},
])
def test_records_that_are_not_mix_records_are_malformed(record: object) -> None:
    assert place_record(record).part == MALFORMED


def test_the_validator_accepts_every_well_formed_kind_of_the_real_mix() -> None:
    refused = {part: check_mix_record(record) for part, record in every_kind()
               if check_mix_record(record)}
    assert list(refused) == ["malformed"]


@pytest.mark.parametrize(("record", "rule"), [
    ({"id": "", "image": "coco/train2017/000000000009.jpg",
      "conversations": turns("<image>\nQ?", "A.")}, "mix-keys"),
    ({"id": "1", "image": "../etc/passwd", "conversations": turns("<image>\nQ?", "A.")},
     "mix-image"),
    ({"id": "1", "image": "vg/1.jpg", "conversations": turns("<image>\nQ?", "A.", "More?")},
     "mix-turns"),
    ({"id": "1", "image": "vg/1.jpg", "conversations": turns("Q?", "A.")}, "mix-image-token"),
    ({"id": "1", "conversations": turns("<image>\nQ?", "A.")}, "mix-image-token"),
    ({"id": "1", "conversations": [{"from": "human", "value": "Q?"}]}, "mix-turns"),
    (coco(9, "<image>\nQ?", "A.") | {"conversations": [{"from": "human", "value": 3}]},
     "mix-turns"),
])
def test_the_validator_names_what_is_wrong(record: object, rule: str) -> None:
    assert rule in {violation.rule for violation in check_mix_record(record)}


def test_without_the_task_a_record_lands_in_the_same_part() -> None:
    assert [place_record(r, with_task=False).part for _, r in every_kind()] == [
        place_record(r).part for _, r in every_kind()]
