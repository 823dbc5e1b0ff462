"""The source nouns a dataset reader yields: images with captions and boxes, baseline pairs.

They live here, below core, so `dataset/` never imports core; `core.records` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass

TASKS: tuple[str, ...] = ("conversation", "detail", "complex_reasoning")


@dataclass(frozen=True)
class Box:
    """One object instance: category name and [x1, y1, x2, y2] normalised to 0..1 (3 decimals)."""

    category: str
    bbox: tuple[float, float, float, float]
    crowd: bool = False


@dataclass(frozen=True)
class Image:
    """One source image with its captions and boxes."""

    image_id: int
    file_name: str
    width: int
    height: int
    captions: tuple[str, ...] = ()
    boxes: tuple[Box, ...] = ()
    split: str = ""


@dataclass(frozen=True)
class Pair:
    """One question and its answer."""

    question: str
    answer: str


@dataclass(frozen=True)
class BaselineConversation:
    """A GPT-4-made LLaVA-Instruct record from mix665k, tagged by task type."""

    image_id: int
    task: str
    record_id: str
    pairs: tuple[Pair, ...]
