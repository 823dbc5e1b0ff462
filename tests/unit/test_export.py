"""Export writers: exact mix665k shape, refusal of bad records, atomic replace, all formats."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import ijson
import pytest

from visinstruct.core.errors import ExportError
from visinstruct.core.export import writers as export_module
from visinstruct.core.export.validate import validate_llava_file
from visinstruct.core.export.writers import (
    ExportItem,
    ExportSummary,
    RecordRejected,
    export,
    to_llava_record,
)
from visinstruct.core.records import Pair

CONVERSATION = ExportItem(
    image_id=9,
    task="conversation",
    pairs=(
        Pair("What is on the plate?", "Broccoli, rice and a piece of salmon."),
        Pair("Is the meal served café-style?", "It looks home-made — on a plain white plate."),
    ),
    meta={"prompt_version": "conv-3f2a", "model": "mixtral", "scores": [9, 8]},
)
DETAIL = ExportItem(
    image_id=581929,
    task="detail",
    pairs=(Pair("Describe the image in detail.", "A tall giraffe stands by a wooden fence."),),
)


def bad_item(image_id: int = 42) -> ExportItem:
    """An item whose answer is empty once control characters are gone (rule empty-text)."""
    return ExportItem(image_id, "conversation", (Pair("What is it?", " \x00\x1b[0m "),))


def test_image_path_defaults_to_coco_train2017() -> None:
    assert DETAIL.image_path == "coco/train2017/000000581929.jpg"
    assert ExportItem(1, "detail", (), image_path="x/y.jpg").image_path == "x/y.jpg"


def test_llava_record_has_the_exact_mix665k_shape() -> None:
    assert to_llava_record(CONVERSATION) == {
        "id": "000000000009",
        "image": "coco/train2017/000000000009.jpg",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat is on the plate?"},
            {"from": "gpt", "value": "Broccoli, rice and a piece of salmon."},
            {"from": "human", "value": "Is the meal served café-style?"},
            {"from": "gpt", "value": "It looks home-made — on a plain white plate."},
        ],
    }


def test_llava_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "llava.json"
    summary = export(iter([CONVERSATION, DETAIL]), "llava", out)
    assert summary == ExportSummary(records=2, pairs=3, path=out)

    expected = [to_llava_record(CONVERSATION), to_llava_record(DETAIL)]
    raw = out.read_bytes()
    # Same bytes as json.dump of the whole list: one line, no indent, raw UTF-8.
    assert raw == json.dumps(expected, ensure_ascii=False).encode("utf-8")
    assert "café".encode() in raw
    assert json.loads(raw) == expected
    with out.open("rb") as source:
        streamed = list(ijson.items(source, "item"))
    assert streamed == expected
    assert streamed[1]["conversations"] == [
        {"from": "human", "value": "<image>\nDescribe the image in detail."},
        {"from": "gpt", "value": "A tall giraffe stands by a wooden fence."},
    ]


def test_written_file_validates(tmp_path: Path) -> None:
    out = tmp_path / "llava.json"
    items = [ExportItem(i, "complex_reasoning", DETAIL.pairs * 3) for i in range(1, 40)]
    export(items, "llava", out)
    report = validate_llava_file(out)
    assert report.ok and report.records == 39


def test_empty_export_is_an_empty_array(tmp_path: Path) -> None:
    out = tmp_path / "llava.json"
    assert export([], "llava", out).records == 0
    assert json.loads(out.read_text(encoding="utf-8")) == []


def test_bad_record_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "llava.json"
    with pytest.raises(RecordRejected) as caught:
        export([CONVERSATION, DETAIL, bad_item(42)], "llava", out)
    message = str(caught.value)
    assert "record 2 (id 000000000042)" in message and "empty-text" in message
    assert (caught.value.index, caught.value.record_id, caught.value.rule) == (
        2,
        "000000000042",
        "empty-text",
    )
    assert os.listdir(tmp_path) == []


def test_bad_record_does_not_clobber_an_existing_file(tmp_path: Path) -> None:
    out = tmp_path / "llava.json"
    out.write_text("previous export", encoding="utf-8")
    with pytest.raises(ExportError, match="empty-text"):
        export([DETAIL, bad_item()], "llava", out)
    assert out.read_text(encoding="utf-8") == "previous export"
    assert os.listdir(tmp_path) == ["llava.json"]


def test_unknown_task_is_refused(tmp_path: Path) -> None:
    item = ExportItem(5, "caption", DETAIL.pairs)
    with pytest.raises(RecordRejected, match="rule task") as caught:
        export([item], "llava", tmp_path / "llava.json")
    assert caught.value.rule == "task"


def test_export_replaces_atomically(tmp_path: Path) -> None:
    out = tmp_path / "llava.json"
    out.write_text("previous export", encoding="utf-8")
    seen_while_writing: list[str] = []

    def items() -> Iterator[ExportItem]:
        yield CONVERSATION
        seen_while_writing.append(out.read_text(encoding="utf-8"))
        yield DETAIL

    export(items(), "llava", out)
    assert seen_while_writing == ["previous export"]
    assert len(json.loads(out.read_text(encoding="utf-8"))) == 2
    assert os.listdir(tmp_path) == ["llava.json"]


def test_failing_source_leaves_no_temp_file(tmp_path: Path) -> None:
    def items() -> Iterator[ExportItem]:
        yield DETAIL
        raise RuntimeError("store went away")

    with pytest.raises(RuntimeError, match="store went away"):
        export(items(), "jsonl", tmp_path / "out.jsonl")
    assert os.listdir(tmp_path) == []


def test_missing_parent_folders_are_created(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "llava.json"
    export([DETAIL], "llava", out)
    assert out.is_file()


def test_parent_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder", encoding="utf-8")
    out = blocker / "sub" / "llava.json"
    with pytest.raises(ExportError) as caught:
        export([DETAIL], "llava", out)
    assert str(out) in str(caught.value) and "\n" not in str(caught.value)


def test_out_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="is a directory") as caught:
        export([DETAIL], "llava", tmp_path)
    assert str(tmp_path) in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_folder_without_write_permission(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(ExportError, match="not writable"):
            export([DETAIL], "llava", locked / "llava.json")
    finally:
        locked.chmod(0o700)


def test_permission_denied_on_create_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def deny(*args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(export_module.os, "open", deny)
    out = tmp_path / "llava.json"
    with pytest.raises(ExportError) as caught:
        export([DETAIL], "llava", out)
    assert str(caught.value) == (
        f"{out}: cannot write there (Permission denied); choose another output path"
    )


def test_unknown_format_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="valid formats: llava, jsonl, hf"):
        export([DETAIL], "csv", tmp_path / "x.csv")


def test_jsonl_has_task_and_meta(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    summary = export([CONVERSATION, DETAIL], "jsonl", out)
    assert (summary.records, summary.pairs) == (2, 3)
    lines = out.read_text(encoding="utf-8").splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first == {
        **to_llava_record(CONVERSATION),
        "task": "conversation",
        "source": "visinstruct",
        "prompt_version": "conv-3f2a",
        "model": "mixtral",
        "scores": [9, 8],
    }
    assert second == {**to_llava_record(DETAIL), "task": "detail", "source": "visinstruct"}


@pytest.mark.parametrize(
    ("meta", "rule"),
    [
        ({"id": "x"}, "meta-keys"),
        ({"score": float("nan")}, "meta-json"),
        ({"at": object()}, "meta-json"),
    ],
)
def test_jsonl_refuses_bad_meta(tmp_path: Path, meta: dict[str, object], rule: str) -> None:
    item = ExportItem(7, "detail", DETAIL.pairs, meta=meta)
    with pytest.raises(RecordRejected) as caught:
        export([DETAIL, item], "jsonl", tmp_path / "out.jsonl")
    assert caught.value.rule == rule and caught.value.index == 1
    assert os.listdir(tmp_path) == []


def test_hf_save_and_load(tmp_path: Path) -> None:
    import datasets

    out = tmp_path / "hf"
    summary = export([CONVERSATION, DETAIL], "hf", out)
    assert (summary.records, summary.pairs, summary.path) == (2, 3, out)
    loaded = datasets.load_from_disk(str(out))
    assert loaded.column_names == ["id", "image", "conversations", "task", "source", "provenance"]
    assert loaded.num_rows == 2
    assert loaded[1] == {**to_llava_record(DETAIL), "task": "detail", "source": "visinstruct",
                         "provenance": ""}
    assert json.loads(loaded[0]["provenance"]) == CONVERSATION.meta
    assert sorted(os.listdir(tmp_path)) == ["hf"]

    # A second export replaces the earlier dataset in place.
    export([DETAIL], "hf", out)
    assert datasets.load_from_disk(str(out)).num_rows == 1
    assert sorted(os.listdir(tmp_path)) == ["hf"]


def test_hf_refuses_bad_record_and_foreign_folder(tmp_path: Path) -> None:
    with pytest.raises(RecordRejected, match="record 1 .*empty-text"):
        export([DETAIL, bad_item()], "hf", tmp_path / "hf")
    assert os.listdir(tmp_path) == []

    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "keep.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ExportError, match="not a saved dataset"):
        export([DETAIL], "hf", foreign)
    assert os.listdir(foreign) == ["keep.jpg"]
