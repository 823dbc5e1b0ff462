"""The mix665k reader and its task classifier, on records built from the real GPT-4 fixtures."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REAL_DATA
from visinstruct.core.errors import DataError
from visinstruct.core.records import BaselineConversation, Pair
from visinstruct.dataset.llava import COUNT_KEYS, classify_record, read_mix665k

BENCH = REAL_DATA / "llava" / "llava_bench_coco"
TASK_OF_CATEGORY = {"conv": "conversation", "detail": "detail", "complex": "complex_reasoning"}


def _record(image_id: int | str, *turns: str, image: str | None = None) -> dict[str, Any]:
    """A record of mix665k's exact shape; turns alternate human, gpt, human, ..."""
    record: dict[str, Any] = {"id": f"{int(image_id):012d}"}
    if image is None:
        image = f"coco/train2017/{int(image_id):012d}.jpg"
    if image:
        record["image"] = image
    record["conversations"] = [
        {"from": "human" if index % 2 == 0 else "gpt", "value": text}
        for index, text in enumerate(turns)
    ]
    return record


def _jsonl(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (BENCH / name).read_text().splitlines()]


def _qa90_records() -> list[tuple[str, dict[str, Any]]]:
    """(expected task, record) for the 90 LLaVA-Bench questions with their GPT-4 answers."""
    answers = {answer["question_id"]: answer for answer in _jsonl("qa90_gpt4_answer.jsonl")}
    built = []
    for question in _jsonl("qa90_questions.jsonl"):
        answer = answers[question["question_id"]]
        assert answer["category"] == question["category"]
        image_id = int(question["image"].removesuffix(".jpg"))
        record = _record(image_id, "<image>\n" + question["text"], answer["text"])
        built.append((TASK_OF_CATEGORY[question["category"]], record))
    return built


def _qa30x3_records() -> list[tuple[str, dict[str, Any]]]:
    """(expected task, record) for the 30x3 GPT-4 QA file, with <image> after the question."""
    return [
        (
            TASK_OF_CATEGORY[item["type"]],
            _record(int(item["id"]), item["instruction"] + "\n<image>", item["output"]),
        )
        for item in _jsonl("coco2014_val_gpt4_qa_30x3.jsonl")
    ]


def _write(path: Path, records: Any) -> Path:
    path.write_text(records if isinstance(records, str) else json.dumps(records))
    return path


# --- classification of the real GPT-4 records -------------------------------------------------


def test_every_qa90_record_gets_its_category() -> None:
    built = _qa90_records()
    wrong = [(task, record) for task, record in built if classify_record(record) != task]
    assert wrong == []
    assert Counter(task for task, _ in built) == {
        "conversation": 30, "detail": 30, "complex_reasoning": 30,
    }


def test_every_30x3_record_gets_its_type_with_the_image_token_last() -> None:
    built = _qa30x3_records()
    wrong = [(task, record) for task, record in built if classify_record(record) != task]
    assert wrong == []
    assert len(built) == 90


def test_several_gpt4_turns_about_one_image_are_a_conversation() -> None:
    turns = [
        text
        for task, record in _qa90_records()
        if task == "conversation"
        for turn in record["conversations"]
        for text in [turn["value"]]
    ][:6]
    assert classify_record(_record(441147, *turns)) == "conversation"


# --- records that are not the GPT-4 baseline ------------------------------------------------


VQA_STYLE_RECORDS = {
    "vqav2 merged questions": _record(
        9, "<image>\nWhat is the man holding?\nAnswer the question using a single word or phrase.",
        "frisbee", "Is it sunny?\nAnswer the question using a single word or phrase.", "Yes",
    ),
    "single short answer": _record(9, "What color is the bus?\n<image>", "red"),
    "option letter": _record(
        9,
        "<image>\nWhat is the dog about to do?\nA. sleep\nB. eat\nC. jump\nD. swim\n"
        "Answer with the option's letter from the given choices directly.",
        "C",
    ),
    "option list without the instruction": _record(
        9, "<image>\nWhich animal is shown?\nA. cat\nB. dog", "B. dog is the animal shown here"
    ),
    "region description": _record(
        9, "<image>\nPlease provide a short description for this region: [0.12, 0.3, 0.56, 0.98]",
        "Man in a blue jacket",
    ),
    "refcoco box request": _record(
        9,
        "<image>\nPlease provide the bounding box coordinate of the region this sentence "
        "describes: woman on the left.",
        "[0.02, 0.11, 0.41, 0.97]",
        "Please provide the bounding box coordinate of the region this sentence describes: "
        "red car.",
        "[0.5, 0.4, 0.9, 0.8]",
    ),
    "box in a question": _record(
        9, "<image>\nWhat is inside [0.1, 0.2, 0.3, 0.4] in this picture today?",
        "It appears to be a small brown dog sitting on the grass near a bench.",
    ),
    "many terse answers": _record(
        9, "<image>\nWhat sport is this?", "tennis", "How many people?", "2",
        "What color is the court?", "blue", "Who is winning?", "the man in the white shirt",
    ),
}


@pytest.mark.parametrize("name", VQA_STYLE_RECORDS)
def test_vqa_style_records_are_not_baseline(name: str) -> None:
    assert classify_record(VQA_STYLE_RECORDS[name]) is None


def test_records_without_a_coco_image_are_not_baseline() -> None:
    answer = "The image shows a busy kitchen where two cooks are preparing a large meal together."
    question = "<image>\nWhat is happening in the picture shown here?"
    assert classify_record(_record(9, question, answer)) == "conversation"
    for image in ("", "gqa/images/2354786.jpg", "vg/VG_100K/2.jpg", "ocr_vqa/images/1.jpg"):
        assert classify_record(_record(9, question, answer, image=image)) is None


# --- reading a whole file -------------------------------------------------------------------


def _mixed_records() -> list[Any]:
    conversation = _record(
        441147,
        "<image>\nWhat is the color of the two suitcases in the image?",
        "The colors of the two suitcases in the image are black and brown.",
        "Are the suitcases old?",
        "Yes, both suitcases look like antiques, with worn leather and brass corners.",
        "Is anything else there?",  # dangling: dropped
    )
    detail = _record(
        441147, "Describe the following image.\n<image>",
        "A pair of antique suitcases sits on a wooden floor, one stacked on the other.",
    )
    gqa = _record(
        1, "<image>\nIs the sky blue?\nAnswer the question using a single word or phrase.", "Yes",
        image="gqa/images/2354786.jpg",
    )
    text_only = _record(0, "Write a poem about the sea.", "The sea is wide and ...", image="")
    text_only["id"] = "sharegpt_1"
    no_conversations = {"id": "x", "image": "coco/train2017/000000000002.jpg"}
    wrong_speaker = _record(3, "<image>\nHello", "Hi there, this is a full sentence answer.")
    wrong_speaker["conversations"][0]["from"] = "user"
    gpt_first = _record(4, "An answer first", "<image>\nthen a question")
    gpt_first["conversations"][0]["from"], gpt_first["conversations"][1]["from"] = "gpt", "human"
    bad_name = _record(5, "<image>\nA question?", "An answer.", image="coco/train2017/x.jpg")
    return [
        conversation, gqa, text_only, VQA_STYLE_RECORDS["region description"], detail,
        no_conversations, wrong_speaker, gpt_first, bad_name, "not an object",
    ]


def test_read_mix665k_yields_instruct_records_and_counts_every_record(tmp_path: Path) -> None:
    path = _write(tmp_path / "mix.json", _mixed_records())
    counts: Counter[str] = Counter()

    conversations = list(read_mix665k(path, counts=counts))

    assert conversations == [
        BaselineConversation(441147, "conversation", "000000441147", (
            Pair("What is the color of the two suitcases in the image?",
                 "The colors of the two suitcases in the image are black and brown."),
            Pair("Are the suitcases old?",
                 "Yes, both suitcases look like antiques, with worn leather and brass corners."),
        )),
        BaselineConversation(441147, "detail", "000000441147", (
            Pair("Describe the following image.",
                 "A pair of antique suitcases sits on a wooden floor, one stacked on the other."),
        )),
    ]
    assert counts == {
        "records": 10, "text_only": 1, "non_coco": 1, "vqa_style": 1,
        "conversation": 1, "detail": 1, "complex_reasoning": 0, "malformed": 5,
    }
    assert set(counts) == set(COUNT_KEYS)


def test_the_real_gpt4_records_read_back_with_their_ids_and_tasks(tmp_path: Path) -> None:
    built = _qa90_records() + _qa30x3_records()
    path = _write(tmp_path / "mix.json", [record for _, record in built])

    conversations = list(read_mix665k(path))

    # Ids repeat (one image has a record per task) and every record still comes back.
    assert len({c.record_id for c in conversations}) < len(conversations) == 180
    assert [c.task for c in conversations] == [task for task, _ in built]
    for conversation, (_, record) in zip(conversations, built, strict=True):
        assert conversation.image_id == int(record["id"])
        assert conversation.record_id == record["id"]
        question = conversation.pairs[0].question
        assert "<image>" not in question and question == question.strip()


def test_no_counter_needed(tmp_path: Path) -> None:
    path = _write(tmp_path / "mix.json", _mixed_records())
    assert len(list(read_mix665k(path))) == 2


def test_records_stream_before_a_broken_tail_raises(tmp_path: Path) -> None:
    good = json.dumps(_mixed_records()[0])
    path = _write(tmp_path / "mix.json", f"[{good}, {good}, {{\"id\": ")

    conversations = read_mix665k(path)
    assert next(conversations).image_id == 441147
    assert next(conversations).image_id == 441147
    with pytest.raises(DataError, match=r"mix\.json: malformed JSON before byte \d+"):
        next(conversations)


@pytest.mark.parametrize(
    "content", ['{"id": "1", "image": "coco/train2017/1.jpg"}', "", "  \n", '"text"']
)
def test_a_file_that_is_not_a_json_array_is_refused(tmp_path: Path, content: str) -> None:
    path = _write(tmp_path / "mix.json", content)
    with pytest.raises(DataError, match=r"mix\.json: not a JSON array"):
        read_mix665k(path)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_mix665k(tmp_path / "llava_v1_5_mix665k.json")
