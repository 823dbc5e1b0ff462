"""One way to write the evaluation figures, for `evaluate` and the app's evaluation screen alike."""

from __future__ import annotations

from visinstruct.core.evaluation.aggregate import Summary


def relative_text(value: float | None) -> str:
    """The relative score (ours as a % of the baseline) to one decimal: '98.4'."""
    return "–" if value is None else f"{value:.1f}"


def interval_text(summary: Summary) -> str:
    """The 95% interval as '91.2–104.0'; '–' when fewer than two items leave nothing to resample."""
    if summary.ci_low is None or summary.ci_high is None or summary.n < 2:
        return "–"
    return f"{summary.ci_low:.1f}–{summary.ci_high:.1f}"


def bias_text(value: float | None) -> str:
    """Position bias (score shown first minus shown second) with its sign: '+0.25'."""
    return "–" if value is None else f"{value:+.2f}"
