"""The source nouns a dataset reader yields: images with captions, boxes or scene graphs, facts.

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
class SceneObject:
    """One object of a scene graph: its graph key, name, normalised box and attributes."""

    key: str
    name: str
    bbox: tuple[float, float, float, float]
    attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Relation:
    """subject -relation-> object, the two as indexes into the image's objects."""

    subject: int
    name: str
    object: int


@dataclass(frozen=True)
class Fact:
    """A question with a known answer about an image (VQAv2 or GQA), keyed by the source's id."""

    image_key: int | str
    question_id: str
    question: str
    answer: str
    source: str


@dataclass(frozen=True)
class Image:
    """One source image with its captions and boxes, or a GQA scene graph, and its facts.

    `image_id` is the store's id: the COCO id for COCO images; a GQA image's own id is
    `source_id`.
    """

    image_id: int
    file_name: str
    width: int
    height: int
    captions: tuple[str, ...] = ()
    boxes: tuple[Box, ...] = ()
    split: str = ""
    source: str = "coco"
    source_id: str = ""
    objects: tuple[SceneObject, ...] = ()
    relations: tuple[Relation, ...] = ()
    facts: tuple[Fact, ...] = ()
    location: str = ""
    weather: str = ""

    @property
    def has_context(self) -> bool:
        """Whether there is anything to describe: captions or scene graph objects."""
        return bool(self.captions or self.objects)


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
