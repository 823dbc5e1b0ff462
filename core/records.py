"""The nouns of the domain, as frozen values."""

from __future__ import annotations

from dataclasses import dataclass, field

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
