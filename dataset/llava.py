"""Streaming reader of llava_v1_5_mix665k.json: the GPT-4-made LLaVA-Instruct records on COCO."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ijson

from visinstruct.dataset.coco import JSON_BACKEND, malformed_json_error
from visinstruct.dataset.errors import DataError
from visinstruct.dataset.records import TASKS, BaselineConversation, Pair

COCO_PREFIX = "coco/train2017/"
GQA_PREFIX = "gqa/images/"
COUNT_KEYS = (
    "records", "text_only", "non_coco", "vqa_style",
    "conversation", "detail", "complex_reasoning", "malformed",
)
IMAGE_TOKEN = "<image>"

# Instructions that LLaVA-1.5 appends to academic VQA questions (VQAv2, OKVQA, A-OKVQA, ...)
# and the region prompts of RefCOCO and Visual Genome.
_SHORT_ANSWER_PROMPT = re.compile(
    r"answer (?:the question )?(?:using|with|in) (?:only )?(?:a|one) (?:single )?(?:word|phrase)"
    r"|answer with the option|option's letter|answer (?:with )?(?:yes or no|a number)"
    r"|one-sentence caption|short description for this region"
    r"|bounding box coordinate|region this sentence describes",
    re.IGNORECASE,
)
_OPTION_LINE = re.compile(r"^\s*[A-H][.)]\s+\S", re.MULTILINE)
_NUMBER = r"\s*-?(?:\d+\.?\d*|\.\d+)\s*"
_BOX_LIST = re.compile(rf"\[{_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER}\]")

# Ways of asking for a description of the whole image (the detail task), written for the
# questions of LLaVA-Instruct's detail_23k and the paper's list of description requests.
_DETAIL_REQUEST = re.compile(
    r"\bin (?:great |more |full |rich |fine )?detail"
    r"|\bdetailed\b|\bwell-detailed\b"
    r"|\b(?:comprehensive|thorough|exhaustive)\b"
    r"|\belaborate (?:on|explanation|description|account)\b"
    r"|\bdescribe (?:the |this )?(?:following |given |provided |presented )?"
    r"(?:image|picture|photo|photograph|scene|snapshot)\b"
    r"|\bwhat do you (?:see|think is) (?:happening|going on)\b"
    r"|\bwhat(?:'s| is) (?:happening|going on) in (?:the|this) (?:scene|snapshot)\b"
    r"|\bwhat is this (?:photo|picture|image|photograph) about\b"
    r"|\bkey elements\b|\bmain features\b|\bvarious aspects\b"
    r"|\bexplain (?:what you see|the visual content)\b"
    r"|\b(?:walk through|narrate|portray|characterize|break down|rundown|illustrate"
    r"|examine|clarify)\b.*\b(?:image|picture|photo|contents|details)\b",
    re.IGNORECASE,
)
# Words of a question that asks for inference rather than what is visible (complex_reasoning).
_REASONING_CUE = re.compile(
    r"\b(?:why|might|could|may|would|potential(?:ly)?|possible|possibly|likely|infer(?:red)?"
    r"|reasons?|purpose|imagine|benefits?|challenges?|concerns?|precautions?|suggests?"
    r"|significance|implications?|impact|factors?|aftermath|measures)\b",
    re.IGNORECASE,
)
_SHORT_ANSWER_WORDS = 3      # VQA ground truths are one to three words
_LONG_ANSWER_WORDS = 60      # single answers this long are reasoning, not a conversation turn
_REASONED_ANSWER_WORDS = 35  # ... or this long when the question asks for inference


class _MalformedRecord(Exception):
    """A record that does not have the mix665k shape."""


def read_mix665k(path: Path, counts: Counter[str] | None = None,
                 gqa_ids: set[str] | None = None) -> Iterator[BaselineConversation]:
    """Stream the instruct-style COCO records of mix665k as baseline conversations.

    `counts`, when given, is filled under COUNT_KEYS as records are read; `gqa_ids`, when
    given, collects the GQA image ids of the records on `gqa/images/<id>.jpg`. The file's
    shape is checked before this returns; a parse error later raises DataError from the iterator.
    """
    path = Path(path)
    _require_json_array(path)
    return _conversations(path, Counter() if counts is None else counts, gqa_ids)


def classify_record(record: Any) -> str | None:
    """The baseline task of a COCO LLaVA-Instruct record, or None for any other record."""
    outcome, _, _ = _sort(record)
    return outcome if outcome in TASKS else None


def _record_pairs(record: dict[str, Any]) -> tuple[Pair, ...]:
    """The record's human/gpt turns as pairs, the image token removed; raises _MalformedRecord."""
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise _MalformedRecord("no conversations")
    pairs: list[Pair] = []
    for index in range(0, len(turns) - 1, 2):
        question = _turn_text(turns[index], "human")
        answer = _turn_text(turns[index + 1], "gpt")
        pairs.append(Pair(question.replace(IMAGE_TOKEN, "").strip(), answer.strip()))
    if len(turns) % 2:
        _turn_text(turns[-1], "human")  # a dangling question is dropped, but must be well-formed
    if not pairs:
        raise _MalformedRecord("no answered question")
    return tuple(pairs)


def task_of_pairs(pairs: tuple[Pair, ...]) -> str | None:
    """conversation, detail or complex_reasoning for instruct-style pairs; None for VQA-style."""
    if _is_vqa_style(pairs):
        return None
    if len(pairs) > 1:
        return "conversation"
    question, answer = pairs[0].question, pairs[0].answer
    if _DETAIL_REQUEST.search(question):
        return "detail"
    words = len(answer.split())
    if words >= _LONG_ANSWER_WORDS or (
        words >= _REASONED_ANSWER_WORDS and _REASONING_CUE.search(question)
    ):
        return "complex_reasoning"
    return "conversation"


def _is_vqa_style(pairs: tuple[Pair, ...]) -> bool:
    """True for academic VQA and region records: short-answer prompts, options, boxes, terse
    replies."""
    for pair in pairs:
        if _SHORT_ANSWER_PROMPT.search(pair.question) or _BOX_LIST.search(pair.question):
            return True
        if len(_OPTION_LINE.findall(pair.question)) >= 2 or _BOX_LIST.fullmatch(pair.answer):
            return True
    short = sum(len(pair.answer.split()) <= _SHORT_ANSWER_WORDS for pair in pairs)
    return short * 4 >= len(pairs) * 3


def _turn_text(turn: Any, speaker: str) -> str:
    """The text of a turn that must come from `speaker`."""
    if not isinstance(turn, dict) or turn.get("from") != speaker:
        raise _MalformedRecord(f"expected a {speaker} turn")
    value = turn.get("value")
    if not isinstance(value, str):
        raise _MalformedRecord("turn text is not a string")
    return value


def _coco_image_id(image: str) -> int | None:
    """The COCO id in 'coco/train2017/000000123456.jpg', or None when the name has none."""
    stem = image[len(COCO_PREFIX):].rsplit(".", 1)[0]
    return int(stem) if stem.isdigit() else None


def _gqa_image_id(image: str) -> str:
    """The GQA id in 'gqa/images/2354786.jpg', or '' for any other image."""
    if not image.startswith(GQA_PREFIX):
        return ""
    return image[len(GQA_PREFIX):].rsplit(".", 1)[0]


def _sort(record: Any) -> tuple[str, int, tuple[Pair, ...]]:
    """Which COUNT_KEYS bucket a record falls in, with its image id and pairs when it has them."""
    if not isinstance(record, dict):
        return "malformed", 0, ()
    image = record.get("image")
    if image is None:
        return "text_only", 0, ()
    if not isinstance(image, str):
        return "malformed", 0, ()
    if not image.startswith(COCO_PREFIX):
        return "non_coco", 0, ()
    image_id = _coco_image_id(image)
    if image_id is None:
        return "malformed", 0, ()
    try:
        pairs = _record_pairs(record)
    except _MalformedRecord:
        return "malformed", image_id, ()
    return task_of_pairs(pairs) or "vqa_style", image_id, pairs


def _conversations(path: Path, counts: Counter[str],
                   gqa_ids: set[str] | None = None) -> Iterator[BaselineConversation]:
    """Yield the instruct-style COCO records, counting every record by bucket."""
    for key in COUNT_KEYS:
        counts.setdefault(key, 0)
    with path.open("rb") as stream:
        try:
            for record in JSON_BACKEND.items(stream, "item", use_float=True):
                counts["records"] += 1
                outcome, image_id, pairs = _sort(record)
                counts[outcome] += 1
                if outcome == "non_coco" and gqa_ids is not None:
                    gqa_id = _gqa_image_id(record["image"])
                    if gqa_id:
                        gqa_ids.add(gqa_id)
                if outcome in TASKS:
                    yield BaselineConversation(image_id, outcome, str(record.get("id", "")), pairs)
        except ijson.JSONError as error:
            raise malformed_json_error(path, error, stream.tell()) from None


def _require_json_array(path: Path) -> None:
    """Raise unless the file exists and its first character opens a JSON array."""
    try:
        with path.open("rb") as stream:
            head = stream.read(4096).lstrip()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as error:
        raise DataError(f"{path}: cannot be read: {error.strerror}") from None
    if not head.startswith(b"["):
        raise DataError(
            f"{path}: not a JSON array of records: give llava_v1_5_mix665k.json as the baseline"
        )
