"""Diversity of prompt versions for the lab: every version of a prompt, and a trial's two sides."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from visinstruct.core.analysis.diversity import Diversity
from visinstruct.core.analysis.versions import (
    RUN_AND_LAB,
    VersionDiversity,
    generations_diversity,
    version_diversity,
)
from visinstruct.core.lab.trials import LAB_TASKS, LabResult
from visinstruct.core.store.database import Store

GENERATION_TASKS = tuple(task for task in LAB_TASKS if task != "judge")


@dataclass(frozen=True)
class TrialDiversity:
    """A trial's edited and saved versions on its images, and the baseline on the same images."""

    trial: Diversity
    saved: Diversity
    baseline: Diversity


def lab_version_diversity(store: Store, task: str,
                          cancel: threading.Event | None = None) -> list[VersionDiversity]:
    """Each version of generation prompt `task` over its run and lab pairs; [] for the judge."""
    if task not in GENERATION_TASKS:
        return []
    return version_diversity(store, task=task, purposes=RUN_AND_LAB, cancel=cancel)


def trial_diversity(store: Store, result: LabResult) -> TrialDiversity | None:
    """The trial's diversity on its own images; None for a judge trial."""
    if result.name not in GENERATION_TASKS:
        return None
    tried = [s.generation_id for s in result.trial_samples if s.generation_id is not None]
    saved = [s.generation_id for s in result.saved_samples if s.generation_id is not None]
    sides = generations_diversity(store, {"trial": tried, "saved": saved}, result.name)
    return TrialDiversity(sides["trial"], sides["saved"], sides["baseline"])
