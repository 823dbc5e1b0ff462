"""The evaluation figures against numbers worked out by hand."""

from __future__ import annotations

import pytest

from visinstruct.core.evaluation.aggregate import (
    VerdictRow,
    bootstrap_interval,
    compared_items,
    results,
    summarize,
    summarize_by_task,
)

A, B, C = 441147, 353536, 506095


def verdict(image: int, task: str, first: str, scores: tuple[float, float] | None,
            item: int = 0) -> VerdictRow:
    """A verdict as the evaluator gave it: (Assistant 1, Assistant 2) scores, or None unparsed."""
    if scores is None:
        return VerdictRow(image, task, "conversation", item, first, None, None, False)
    ours, baseline = scores if first == "ours" else (scores[1], scores[0])
    return VerdictRow(image, task, "conversation", item, first, ours, baseline, True)


# The scenario of tests/integration/test_evaluate.py, as (Assistant 1, Assistant 2) per order.
SCENARIO = [
    verdict(A, "conversation", "ours", (8, 6)), verdict(A, "conversation", "baseline", (7, 8)),
    verdict(A, "detail", "ours", (7, 7)), verdict(A, "detail", "baseline", (8, 6)),
    verdict(A, "complex_reasoning", "ours", (9, 5)),
    verdict(A, "complex_reasoning", "baseline", (6, 8)),
    verdict(B, "conversation", "ours", None), verdict(B, "conversation", "baseline", (6, 6)),
    verdict(B, "detail", "ours", None), verdict(B, "detail", "baseline", None),
    verdict(B, "complex_reasoning", "ours", (9, 7)),
    verdict(B, "complex_reasoning", "baseline", (8, 8)),
    verdict(C, "conversation", "ours", None), verdict(C, "conversation", "baseline", None),
    verdict(C, "detail", "ours", (5, 9)), verdict(C, "detail", "baseline", (9, 3)),
    verdict(C, "complex_reasoning", "ours", (8, 8)),
    verdict(C, "complex_reasoning", "baseline", (7, 7)),
]


def test_orders_are_averaged_per_item_and_unparsed_orders_are_left_out() -> None:
    items = {i.key[:2]: i for i in compared_items(SCENARIO)}

    # B/detail and C/conversation have no parsed verdict: they are not compared items.
    assert set(items) == {(A, "conversation"), (A, "detail"), (A, "complex_reasoning"),
                          (B, "conversation"), (B, "complex_reasoning"), (C, "detail"),
                          (C, "complex_reasoning")}
    assert (items[A, "conversation"].ours, items[A, "conversation"].baseline) == (8, 6.5)
    assert (items[A, "detail"].ours, items[A, "detail"].baseline) == (6.5, 7.5)
    assert (items[C, "detail"].ours, items[C, "detail"].baseline) == (4, 9)
    # Only one order of B/conversation parsed: it counts, but has no position bias.
    assert (items[B, "conversation"].ours, items[B, "conversation"].baseline) == (6, 6)
    assert items[B, "conversation"].bias is None
    # ((8 - 6) + (7 - 8)) / 2 and ((5 - 9) + (9 - 3)) / 2
    assert items[A, "conversation"].bias == 0.5
    assert items[C, "detail"].bias == 1.0


def test_overall_figures_match_the_hand_computation() -> None:
    overall = summarize(SCENARIO)

    # ours 8 + 6.5 + 8.5 + 6 + 8.5 + 4 + 7.5 = 49
    # baseline 6.5 + 7.5 + 5.5 + 6 + 7.5 + 9 + 7.5 = 49.5
    assert overall.relative_score == 98.99
    assert (overall.wins, overall.ties, overall.losses, overall.n) == (3, 2, 2, 7)
    # biases 0.5, 1, 1, 1, 1, 0 over the six items with both orders parsed
    assert overall.position_bias == 0.75
    assert overall.unparsed == 5
    assert overall.ci_low is not None and overall.ci_high is not None
    assert overall.ci_low <= overall.relative_score <= overall.ci_high


def test_by_task_figures_match_the_hand_computation() -> None:
    by_task = summarize_by_task(SCENARIO)

    conversation, detail, complex_reasoning = (by_task[t] for t in
                                               ("conversation", "detail", "complex_reasoning"))
    assert conversation.relative_score == 112.0          # 100 * 7 / 6.25
    assert (conversation.wins, conversation.ties, conversation.losses) == (1, 1, 0)
    assert (conversation.n, conversation.position_bias, conversation.unparsed) == (2, 0.5, 3)
    assert detail.relative_score == 63.64                # 100 * 5.25 / 8.25
    assert (detail.wins, detail.ties, detail.losses) == (0, 0, 2)
    assert (detail.n, detail.position_bias, detail.unparsed) == (2, 1.0, 2)
    assert complex_reasoning.relative_score == 119.51    # 100 * 24.5 / 20.5
    assert (complex_reasoning.wins, complex_reasoning.ties, complex_reasoning.losses) == (2, 1, 0)
    assert (complex_reasoning.n, complex_reasoning.position_bias,
            complex_reasoning.unparsed) == (3, 0.667, 0)


def test_the_bootstrap_interval_of_two_items_spans_the_extreme_resamples() -> None:
    # Resamples of two items are {a, a}, {a, b} or {b, b}, each at least a quarter of the time,
    # so the 2.5th and 97.5th percentiles are the all-b and all-a ratios.
    rows = [verdict(A, "detail", "ours", (8, 6)), verdict(B, "detail", "ours", (6, 8))]
    summary = summarize(rows)

    assert summary.relative_score == 100.0
    assert (summary.ci_low, summary.ci_high) == (75.0, 133.33)


def test_the_bootstrap_is_seeded() -> None:
    items = compared_items(SCENARIO)

    assert bootstrap_interval(items, seed=3) == bootstrap_interval(items, seed=3)
    assert bootstrap_interval(items[:1]) == (pytest.approx(100 * 8 / 6.5),) * 2


def test_position_bias_cancels_in_the_relative_score() -> None:
    # An evaluator that always gives the first answer 7 and the second 5: no real difference.
    rows = [verdict(image, "conversation", first, (7, 5))
            for image in (A, B, C) for first in ("ours", "baseline")]
    summary = summarize(rows)

    assert summary.relative_score == 100.0
    assert (summary.wins, summary.ties, summary.losses) == (0, 3, 0)
    assert summary.position_bias == 2.0
    assert (summary.ci_low, summary.ci_high) == (100.0, 100.0)


def test_a_later_verdict_for_the_same_order_replaces_the_earlier() -> None:
    rows = [verdict(A, "detail", "ours", None), verdict(A, "detail", "ours", (9, 3))]

    summary = summarize(rows)

    assert (summary.n, summary.unparsed, summary.relative_score) == (1, 0, 300.0)


def test_no_verdicts_give_empty_figures_with_every_task_present() -> None:
    empty = results([])

    assert empty["overall"] == {"relative_score": None, "ci_low": None, "ci_high": None,
                                "wins": 0, "ties": 0, "losses": 0, "n": 0,
                                "position_bias": None, "unparsed": 0}
    assert set(empty["by_task"]) == {"conversation", "detail", "complex_reasoning"}
    assert empty["by_task"]["detail"] == empty["overall"]


def test_only_unparsed_verdicts_are_counted_but_not_scored() -> None:
    summary = summarize([verdict(A, "detail", "ours", None),
                         verdict(A, "detail", "baseline", None)])

    assert (summary.n, summary.unparsed, summary.relative_score, summary.position_bias) == (
        0, 2, None, None)
