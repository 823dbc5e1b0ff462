"""The strict mix665k validator: one broken rule at a time, and whole files streamed."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from visinstruct.core.errors import ExportError
from visinstruct.core.export.validate import (
    FILE_RULES,
    RULES,
    check_record,
    validate_llava_file,
    validate_record,
)


def good_record() -> dict[str, Any]:
    return {
        "id": "000000000009",
        "image": "coco/train2017/000000000009.jpg",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat is on the plate?"},
            {"from": "gpt", "value": "Broccoli and rice."},
            {"from": "human", "value": "Is it a healthy meal?"},
            {"from": "gpt", "value": "Yes, mostly vegetables."},
        ],
    }


def broken(change: str) -> dict[str, Any]:
    """A good record with exactly one rule broken, named by `change`."""
    record = copy.deepcopy(good_record())
    turns = record["conversations"]
    if change == "id-format":
        record["id"] = "9"
    elif change == "image-path":
        record["image"] = "train2017/000000000009.jpg"
    elif change == "keys":
        record["task"] = "conversation"
    elif change == "turn-shape":
        turns[1]["score"] = 9
    elif change == "turn-roles":
        turns[1]["from"] = "assistant"
    elif change == "alternation":
        del turns[3]
    elif change == "image-token":
        turns[0]["value"] = "What is on the plate?\n<image>"
    elif change == "empty-text":
        turns[3]["value"] = "  \n "
    elif change == "text-type":
        turns[1]["value"] = ["Broccoli", "rice"]
    else:
        raise AssertionError(change)
    return record


def rules_broken(record: Any) -> set[str]:
    return {violation.rule for violation in check_record(record)}


def test_good_record_has_no_problems() -> None:
    assert validate_record(good_record()) == []


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_rule_caught_alone(rule: str) -> None:
    problems = validate_record(broken(rule))
    assert problems, f"{rule} was not caught"
    assert {problem.split(":", 1)[0] for problem in problems} == {rule}


@pytest.mark.parametrize(
    ("record_change", "rule"),
    [
        (lambda r: r.update(id=9), "id-format"),
        (lambda r: r.update(id="00000000000٩"), "id-format"),  # a non-ASCII digit
        (lambda r: r.update(image="coco/train2017/000000000010.jpg"), "image-path"),
        (lambda r: r.pop("image"), "keys"),
        (lambda r: r.update(conversations={"from": "human"}), "turn-shape"),
        (lambda r: r["conversations"].__setitem__(2, "Is it healthy?"), "turn-shape"),
        (lambda r: r["conversations"].reverse(), "alternation"),
        (lambda r: r.update(conversations=[]), "alternation"),
        (lambda r: r["conversations"][0].update(value="<image>What?"), "image-token"),
        (lambda r: r["conversations"][2].update(value="<image>\nAgain?"), "image-token"),
        (lambda r: r["conversations"][0].update(value="<image>\n"), "empty-text"),
        (lambda r: r["conversations"][1].update(value="bad \ud800 text"), "text-type"),
        (lambda r: r["conversations"][1].update(value=None), "text-type"),
    ],
    ids=[
        "id-int",
        "id-arabic-digit",
        "image-other-id",
        "image-missing",
        "turns-object",
        "turn-string",
        "gpt-first",
        "no-turns",
        "token-no-newline",
        "token-twice",
        "only-token",
        "lone-surrogate",
        "value-null",
    ],
)
def test_more_ways_to_break_a_rule(record_change: Any, rule: str) -> None:
    record = good_record()
    record_change(record)
    assert rule in rules_broken(record)


def test_not_an_object_is_a_keys_problem() -> None:
    assert rules_broken(["id", "image"]) == {"keys"}


def test_problems_name_the_rule_and_detail() -> None:
    [problem] = validate_record(broken("turn-roles"))
    assert problem.startswith("turn-roles: turn 1")
    assert "'assistant'" in problem


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return path


def test_valid_file_reports_ok(tmp_path: Path) -> None:
    report = validate_llava_file(write_json(tmp_path / "x.json", [good_record()] * 3))
    assert report.ok and report.records == 3 and report.problems == ()
    assert "all valid" in report.summary()


def test_file_report_locates_bad_records(tmp_path: Path) -> None:
    records = [good_record(), broken("alternation"), good_record(), broken("keys")]
    report = validate_llava_file(write_json(tmp_path / "x.json", records))
    assert not report.ok
    assert report.records == 4
    assert [(p.index, p.record_id, p.rule) for p in report.problems] == [
        (1, "000000000009", "alternation"),
        (3, "000000000009", "keys"),
    ]
    assert str(report.problems[0]).startswith("record 1 (id 000000000009): alternation:")
    assert report.rule_counts == {"alternation": 1, "keys": 1}


def test_file_report_keeps_only_the_first_problems(tmp_path: Path) -> None:
    path = write_json(tmp_path / "x.json", [broken("empty-text")] * 50)
    report = validate_llava_file(path, max_problems=5)
    assert report.problem_count == 50 and len(report.problems) == 5


def test_file_that_is_not_an_array(tmp_path: Path) -> None:
    report = validate_llava_file(write_json(tmp_path / "x.json", {"item": [good_record()]}))
    assert [p.rule for p in report.problems] == ["top-level"]


@pytest.mark.parametrize(
    "content",
    [b'[{"id": "000000000009", "image": ', b"[1, 2,]", b'["\xff\xfe"]'],
    ids=["truncated", "trailing-comma", "bad-utf8"],
)
def test_malformed_file_is_a_json_syntax_problem(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(content)
    report = validate_llava_file(path)
    assert "json-syntax" in report.rule_counts
    assert set(report.rule_counts) <= set(RULES) | set(FILE_RULES)


def test_missing_file_is_an_export_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="missing.json: cannot read"):
        validate_llava_file(tmp_path / "missing.json")
