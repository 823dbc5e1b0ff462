"""The nouns of the domain, as frozen values (the source nouns come from `dataset.records`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from visinstruct.dataset.records import (
    TASKS,
    BaselineConversation,
    Box,
    Fact,
    Image,
    Pair,
    Relation,
    SceneObject,
)

# Tasks made from an image's facts with no model and no judge.
FACT_TASKS: tuple[str, ...] = ("short_answer",)
ALL_TASKS: tuple[str, ...] = (*TASKS, *FACT_TASKS)
# The `model` of generations that no model made (short answers come from the facts).
FACTS_MODEL = "facts"
SOURCES: tuple[str, ...] = ("coco", "gqa")

__all__ = ["ALL_TASKS", "FACTS_MODEL", "FACT_TASKS", "SOURCES", "TASKS", "BaselineConversation",
           "Box", "Conversation", "Evaluation", "Fact", "Image", "Judgement", "Pair", "Relation",
           "RunState", "SceneObject", "UnitNeed", "Verdict"]


class RunState(enum.StrEnum):
    """A run's `runs.status`: running until it ends in one of the other states."""

    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"   # stopped by the user; resumable
    FAILED = "failed"
    BUDGET = "budget"             # stopped at [budget].max_usd

    @classmethod
    def as_it_stands(cls, stored: str | None, writer_alive: bool) -> str | None:
        """A run row's status as it stands: 'running' while no live process holds the store's
        writer lock means the run was killed, so it is interrupted (and resumable)."""
        return cls.INTERRUPTED.value if stored == cls.RUNNING and not writer_alive else stored


class UnitNeed(enum.StrEnum):
    """What one (image, task) still needs in a run."""

    GENERATE = "generate"         # then judge
    JUDGE = "judge"
    DONE = "done"

@dataclass(frozen=True)
class Conversation:
    """Question-answer pairs about one image, of one task type."""

    image_id: int
    task: str
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
