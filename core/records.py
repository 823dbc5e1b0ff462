"""The nouns of the domain, as frozen values."""

from __future__ import annotations

from dataclasses import dataclass, field

TASKS: tuple[str, ...] = ("conversation", "detail", "complex_reasoning")
# Tasks made from an image's facts with no model and no judge.
FACT_TASKS: tuple[str, ...] = ("short_answer",)
ALL_TASKS: tuple[str, ...] = (*TASKS, *FACT_TASKS)
# The `model` of generations that no model made (short answers come from the facts).
FACTS_MODEL = "facts"
SOURCES: tuple[str, ...] = ("coco", "gqa")


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
class Conversation:
    """Question-answer pairs about one image, of one task type."""

    image_id: int
    task: str
    pairs: tuple[Pair, ...]


@dataclass(frozen=True)
class BaselineConversation:
    """A GPT-4-made LLaVA-Instruct record from mix665k, tagged by task type."""

    image_id: int
    task: str
    record_id: str
    pairs: tuple[Pair, ...]


@dataclass(frozen=True)
class Judgement:
    """A judge's score (1..10, or None when unreadable) for the pair at `index`."""

    index: int
    score: float | None
    reason: str = ""


@dataclass(frozen=True)
class Verdict:
    """An evaluator's scores for the two answers in the order they were shown."""

    first: float | None
    second: float | None
    rationale: str = ""

    @property
    def parsed(self) -> bool:
        return self.first is not None and self.second is not None


@dataclass(frozen=True)
class Evaluation:
    """Ours vs baseline for one image and task: both orders, scores mapped back to each side."""

    image_id: int
    task: str
    ours_first: Verdict
    baseline_first: Verdict
    extra: dict[str, str] = field(default_factory=dict)
