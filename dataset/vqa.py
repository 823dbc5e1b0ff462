"""Streaming reader of VQAv2's questions and annotations files, joined into facts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ijson

from visinstruct.dataset.coco import (
    JSON_BACKEND,
    malformed_json_error,
    open_data_file,
    require_json_object,
)
from visinstruct.dataset.errors import DataError
from visinstruct.dataset.records import Fact


def read_vqa(questions_path: Path, annotations_path: Path,
             only: set[int] | None = None) -> Iterator[Fact]:
    """Facts of VQAv2 questions (file order), each answered with its `multiple_choice_answer`.

    The annotations are read first (only the answer of each question is held, for the
    images in `only` when given); the questions then stream. Both files' shapes are
    checked before this returns. Questions with no annotation are skipped.
    """
    questions_path, annotations_path = Path(questions_path), Path(annotations_path)
    require_json_object(questions_path, "v2_OpenEnded_mscoco_*_questions.json as vqa_questions")
    answers = _answers(annotations_path, only)
    return _facts(questions_path, answers, only)


def _answers(path: Path, only: set[int] | None) -> dict[int, str]:
    require_json_object(path, "v2_mscoco_*_annotations.json as vqa_annotations")
    answers: dict[int, str] = {}
    seen = False
    for item in _items(path, "annotations.item"):
        seen = True
        if not isinstance(item, dict):
            raise DataError(f"{path}: an entry of 'annotations' is not an object")
        if "multiple_choice_answer" not in item:
            raise DataError(f"{path}: annotations have no 'multiple_choice_answer': "
                            "give v2_mscoco_*_annotations.json as vqa_annotations")
        image_id = _int(path, item, "image_id")
        if only is not None and image_id not in only:
            continue
        answer = item["multiple_choice_answer"]
        if not isinstance(answer, str):
            raise DataError(f"{path}: question {item.get('question_id')!r} has "
                            f"multiple_choice_answer={answer!r}, expected a string")
        answers[_int(path, item, "question_id")] = answer.strip()
    if not seen and not _has_key(path, "annotations"):
        raise DataError(f"{path}: no 'annotations' list: "
                        "give v2_mscoco_*_annotations.json as vqa_annotations")
    return answers


def _facts(path: Path, answers: dict[int, str], only: set[int] | None) -> Iterator[Fact]:
    seen = False
    for item in _items(path, "questions.item"):
        seen = True
        if not isinstance(item, dict):
            raise DataError(f"{path}: an entry of 'questions' is not an object")
        image_id = _int(path, item, "image_id")
        if only is not None and image_id not in only:
            continue
        question_id = _int(path, item, "question_id")
        question = item.get("question")
        if not isinstance(question, str):
            raise DataError(f"{path}: question {question_id} has question={question!r}, "
                            "expected a string")
        answer = answers.get(question_id)
        if answer is not None and question.strip() and answer:
            yield Fact(image_id, str(question_id), question.strip(), answer, "vqa")
    if not seen and not _has_key(path, "questions"):
        raise DataError(f"{path}: no 'questions' list: "
                        "give v2_OpenEnded_mscoco_*_questions.json as vqa_questions")


def _items(path: Path, prefix: str) -> Iterator[Any]:
    with open_data_file(path) as stream:
        try:
            yield from JSON_BACKEND.items(stream, prefix, use_float=True)
        except ijson.JSONError as error:
            raise malformed_json_error(path, error, stream.tell()) from None


def _has_key(path: Path, key: str) -> bool:
    """Whether the top-level object has `key` (read only when its list yielded nothing)."""
    with open_data_file(path) as stream:
        try:
            for prefix, event, value in JSON_BACKEND.parse(stream):
                if prefix == "" and event == "map_key" and value == key:
                    return True
        except ijson.JSONError as error:
            raise malformed_json_error(path, error, stream.tell()) from None
    return False


def _int(path: Path, item: dict[str, Any], key: str) -> int:
    value = item.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DataError(f"{path}: an entry has {key}={value!r}, expected an integer")
    return value


