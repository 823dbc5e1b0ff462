"""What a run works on and how it ended: a unit of (image, task), and the run's summary."""

from __future__ import annotations

from dataclasses import dataclass

from visinstruct.core.records import Image, RunState, UnitNeed


@dataclass(frozen=True)
class Unit:
    """One (image, task) and what it still needs: generating (then judging) or only judging."""

    image: Image
    task: str
    need: UnitNeed
    generation_id: int = 0


@dataclass(frozen=True)
class RunSummary:
    """How a run ended."""

    run_id: int
    status: RunState
    done_units: int
    total_units: int
    failed_units: int
    counts: dict[str, int]
    cost_usd: float
    elapsed_s: float
    error: str = ""      # why the run failed (status "failed"), redacted
