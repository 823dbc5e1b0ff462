"""Short, stable text for the figures the monitor shows: durations, rates, money, counts."""

from __future__ import annotations


def duration(seconds: float | None) -> str:
    """'45s', '3m 05s', '2h 10m'; '–' when unknown."""
    if seconds is None:
        return "–"
    whole = int(round(seconds))
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def per_second(value: float | None, unit: str = "/s") -> str:
    if value is None:
        return "–"
    if value >= 100:
        return f"{value:,.0f}{unit}"
    return f"{value:.1f}{unit}"


def money(value: float | None) -> str:
    if value is None:
        return "–"
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


def millis(value: float) -> str:
    if not value:
        return "–"
    if value < 1:
        return "<1ms"
    if value >= 1000:
        return f"{value / 1000:.1f}s"
    return f"{value:.0f}ms"


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "–"


def shorten(text: str, width: int) -> str:
    """One line of at most `width` characters."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: max(1, width - 1)] + "…"
