"""The review screen and the quality gates: filter by rule, read the reason, restore a gated
pair."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import OptionList, Select

from tests.integration.test_gates_pipeline import run, write_config
from tests.tui.support_screens import (
    SIZE,
    make_app,
    open_review,
    query,
    screen_text,
    settle,
    wait_for,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_review_filters_by_gate_rule_shows_the_reason_and_restores(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    run(config)
    db = tmp_path / "run.db"
    app = make_app(config)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_review(pilot)
        screen.query_one("#filter-rule", Select).value = "refusal"
        await wait_for(pilot, lambda: screen.filters.rule == "refusal", "the rule filter")
        await wait_for(pilot, lambda: screen.total == 4, "the filtered count")
        await settle(pilot, app)
        detail = screen.pane.detail
        assert detail is not None
        gated = [p for p in detail.pairs if p.gate_rule == "refusal"]
        assert len(gated) == 1 and "refuses" in gated[0].gate_reason
        assert "gated: refusal" in screen_text(app)
        # Restore it: a human accept wins over the gate, as over the judge.
        screen.query_one("#ours", OptionList).highlighted = detail.pairs.index(gated[0])
        screen.query_one("#ours", OptionList).focus()
        await pilot.press("a")
        await wait_for(pilot, lambda: query(db, "SELECT COUNT(*) FROM reviews")[0][0] == 1,
                       "the restore")
        await wait_for(pilot, lambda: any(p.kept and p.gate_rule == "refusal"
                                          for p in screen.pane.detail.pairs),  # type: ignore[union-attr]
                       "the restored pair shown as kept")
        await settle(pilot, app)
        assert "restored by you" in screen_text(app)


def test_a_judge_reason_that_says_nothing_is_shown_as_missing() -> None:
    """A score with an empty or placeholder reason reads as such, not as 'judge: ...'."""
    from visinstruct.core.review.samples import PairView
    from visinstruct.core.text.gates import missing_reason
    from visinstruct.tui.widgets.review_detail import pair_prompt

    def view(reason: str) -> PairView:
        return PairView(1, 0, "What is it?", "A cat.", "What is it?", "A cat.", 8.0, reason,
                        None, False, True, reason_missing=missing_reason(reason))

    shown = pair_prompt(view("...")).plain
    assert "judge gave no reason" in shown and "judge: ..." not in shown
    assert "judge: The cat is on the mat." in pair_prompt(view("The cat is on the mat.")).plain
