"""Streaming reader of llava_v1_5_mix665k.json: the GPT-4-made LLaVA-Instruct records on COCO.

Which record is which is decided by the one classifier of mix665k (dataset/mix_parts.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ijson

from visinstruct.dataset.coco import JSON_BACKEND, malformed_json_error
from visinstruct.dataset.errors import DataError
from visinstruct.dataset.mix_parts import (
    GQA,
    LLAVA_INSTRUCT,
    MALFORMED,
    SHAREGPT,
    Placement,
    gqa_image_id,
    place_record,
)
from visinstruct.dataset.records import BaselineConversation

COUNT_KEYS = (
    "records", "text_only", "non_coco", "vqa_style",
    "conversation", "detail", "complex_reasoning", "malformed",
)


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
    placement = place_record(record)
    return placement.task if placement.part == LLAVA_INSTRUCT else None


def _bucket(placement: Placement) -> str:
    """The COUNT_KEYS bucket of a placed record (the classifier's parts, as prepare counts)."""
    if placement.part == LLAVA_INSTRUCT:
        return placement.task
    if placement.part == SHAREGPT:
        return "text_only"
    if placement.part == MALFORMED:
        return "malformed"
    return "vqa_style" if placement.image_id else "non_coco"


def _conversations(path: Path, counts: Counter[str],
                   gqa_ids: set[str] | None = None) -> Iterator[BaselineConversation]:
    """Yield the instruct-style COCO records, counting every record by bucket."""
    for key in COUNT_KEYS:
        counts.setdefault(key, 0)
    with path.open("rb") as stream:
        try:
            for record in JSON_BACKEND.items(stream, "item", use_float=True):
                counts["records"] += 1
                placement = place_record(record)
                counts[_bucket(placement)] += 1
                if placement.part == GQA and gqa_ids is not None:
                    gqa_id = gqa_image_id(record["image"])
                    if gqa_id:
                        gqa_ids.add(gqa_id)
                if placement.part == LLAVA_INSTRUCT:
                    yield BaselineConversation(placement.image_id, placement.task,
                                               str(record.get("id", "")), placement.pairs)
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
