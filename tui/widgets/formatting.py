"""Short, stable text for the figures the monitor shows: durations, rates, money, counts."""

from __future__ import annotations

# The figures the CLI shows too are worded by the shared tally module, never twice.
from visinstruct.core.pipeline.tally import counted, duration, money, percent

__all__ = ["counted", "duration", "money", "percent", "per_second", "millis", "shorten"]


def per_second(value: float | None, unit: str = "/s") -> str:
    """A bare rate for a table whose column header names the unit."""
    if value is None:
        return "–"
    if value >= 100:
        return f"{value:,.0f}{unit}"
    return f"{value:.1f}{unit}"


def millis(value: float) -> str:
    if not value:
        return "–"
    if value < 1:
        return "<1ms"
    if value >= 1000:
        return f"{value / 1000:.1f}s"
    return f"{value:.0f}ms"


def shorten(text: str, width: int) -> str:
    """One line of at most `width` characters."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: max(1, width - 1)] + "…"
