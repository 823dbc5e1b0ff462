"""A small mix665k holding every kind of record the real file has, interleaved as there.

The GPT-4 records are the real LLaVA-Bench answers (tests/data); the academic records are
written here in the shape and with the prompts LLaVA-1.5 gave each set.
"""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import REAL_DATA

_BENCH = REAL_DATA / "llava" / "llava_bench_coco"
SHORT = "\nAnswer the question using a single word or phrase."
OPTIONS = "\nAnswer with the option's letter from the given choices directly."


def turns(*texts: str) -> list[dict[str, str]]:
    """Turns alternating human, gpt, human, ..."""
    return [{"from": "human" if n % 2 == 0 else "gpt", "value": text}
            for n, text in enumerate(texts)]


def coco(image_id: int, *texts: str, record_id: str | None = None) -> dict[str, Any]:
    return {"id": record_id or f"{image_id:012d}",
            "image": f"coco/train2017/{image_id:012d}.jpg", "conversations": turns(*texts)}


def _gpt4(category: str, count: int) -> list[dict[str, Any]]:
    """`count` real GPT-4 records of one LLaVA-Bench category, as mix665k records."""
    answers = {a["question_id"]: a["text"] for a in map(
        json.loads, (_BENCH / "qa90_gpt4_answer.jsonl").read_text().splitlines())}
    records = []
    for question in map(json.loads, (_BENCH / "qa90_questions.jsonl").read_text().splitlines()):
        if question["category"] == category and len(records) < count:
            image_id = int(question["image"].removesuffix(".jpg"))
            text = question["text"]
            # mix665k puts <image> before or after the first question; both are here.
            first = f"<image>\n{text}" if len(records) % 2 == 0 else f"{text}\n<image>"
            records.append(coco(image_id, first, answers[question["question_id"]]))
    return records


def every_kind() -> list[tuple[str, dict[str, Any]]]:
    """(part, record) for every kind of record in mix665k, interleaved."""
    conversation, detail, complex_ = _gpt4("conv", 2), _gpt4("detail", 2), _gpt4("complex", 2)
    academic = [
        ("vqav2_okvqa", coco(9, "<image>\nWhat is the man holding?" + SHORT, "Frisbee",
                             "Is it sunny?" + SHORT, "Yes")),
        ("vqav2_okvqa", coco(25, "<image>\nWhat sport can you use this for?" + SHORT,
                             "Racing")),
        ("aokvqa", coco(30, "<image>\nWhat is the dog about to do?\nA. sleep\nB. eat\n"
                            "C. jump\nD. swim" + OPTIONS, "C",
                        record_id="22MexNkBPpdZGX6sxbxVBH")),
        ("refcoco", coco(34, "<image>\nPlease provide the bounding box coordinate of the "
                             "region this sentence describes: woman on the left.",
                         "[0.02, 0.11, 0.41, 0.97]",
                         "Please provide a short description for this region: "
                         "[0.5, 0.4, 0.9, 0.8]", "Red car.")),
        ("gqa", {"id": "2354786", "image": "gqa/images/2354786.jpg", "conversations": turns(
            "<image>\nIs the sky dark?" + SHORT, "Yes", "What is on the wall?" + SHORT,
            "Picture")}),
        ("ocr_vqa", {"id": "140031996X", "image": "ocr_vqa/images/140031996X.jpg",
                     "conversations": turns(
                         "<image>\nWho wrote this book?" + SHORT, "H. Jackson Brown",
                         "What is the title of this book?", "Life's Little Instruction Book",
                         "Is this a religious book?", "No")}),
        ("textcaps", {"id": "011e7e629fb9ae7b", "image": "textvqa/train_images/"
                      "011e7e629fb9ae7b.jpg", "conversations": turns(
                          "<image>\nProvide a one-sentence caption for the provided image.\n"
                          "Reference OCR token: STOP, ALL, WAY",
                          "A red stop sign that says all way.")}),
        ("vg", {"id": "2404787", "image": "vg/VG_100K_2/2404787.jpg", "conversations": turns(
            "<image>\nPlease provide a short description for this region: "
            "[0.41, 0.37, 0.62, 0.84]", "Man wearing a black backpack.")}),
    ]
    sharegpt = [("sharegpt", {"id": "i6IyJda_0", "model": "", "conversations": turns(
        "How do I boil an egg?", "Put it in boiling water for nine minutes.",
        "And soft?", "Six minutes.")})]
    unplaced = [
        ("unclassified", {"id": "sa_10001", "image": "sam/images/sa_10001.jpg",
                          "conversations": turns("<image>\nWhat is this?", "A tower.")}),
        ("unclassified", coco(42, "<image>\nWhat sport is this?", "tennis",
                              "How many people?", "2")),
        ("malformed", {"id": "000000000049", "image": "coco/train2017/000000000049.jpg",
                       "conversations": [{"from": "user", "value": "<image>\nHello"},
                                         {"from": "gpt", "value": "Hi."}]}),
    ]
    gpt = [("llava_instruct", r) for r in conversation + detail + complex_]
    ordered: list[tuple[str, dict[str, Any]]] = []
    pools = [gpt, academic, sharegpt, unplaced]
    while any(pools):
        for pool in pools:
            if pool:
                ordered.append(pool.pop(0))
    return ordered
