"""The evaluation screen through Pilot, on a store with a real run and a real (scripted)
evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tui.support_screens import (
    SIZE,
    SMALL,
    build_store,
    make_app,
    open_evaluation,
    screen_text,
    settle,
    wait_for,
    write_config,
)
from visinstruct.core.evaluation.aggregate import summarize, summarize_by_task
from visinstruct.core.evaluation.view import evaluation_sets, verdict_rows
from visinstruct.core.store.database import Store
from visinstruct.tui.screens.review import ReviewScreen
from visinstruct.tui.widgets.eval_tables import EvaluatedSamplesTable, SummaryTable, interval

pytestmark = pytest.mark.anyio


def rows(table: SummaryTable | EvaluatedSamplesTable) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def test_figures_per_task_match_the_stored_verdicts(config_path: Path) -> None:
    with Store(config_path.with_name("run.db")) as store:
        verdicts = verdict_rows(store, evaluation_sets(store)[0])
    by_task, overall = summarize_by_task(verdicts), summarize(verdicts)
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_evaluation(pilot)

        shown = {r[0]: r for r in rows(screen.query_one(SummaryTable))}
        for name, summary in [*by_task.items(), ("overall", overall)]:
            assert shown[name][1:8] == [
                str(summary.n), f"{summary.relative_score:.1f}", interval(summary),
                str(summary.wins), str(summary.ties), str(summary.losses),
                f"{summary.position_bias:+.2f}"], name
            assert shown[name][8] == str(summary.unparsed)
        assert overall.n == screen.query_one(EvaluatedSamplesTable).row_count
        assert "Ours against the baseline" in screen_text(app)


async def test_sorting_puts_the_biggest_loss_first(config_path: Path) -> None:
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_evaluation(pilot)
        table = screen.query_one(EvaluatedSamplesTable)

        await pilot.press("s")
        await pilot.pause()

        gaps = [s.ours - s.baseline for s in table.samples]  # type: ignore[operator]
        assert gaps == sorted(gaps) and gaps[0] < 0
        assert "Samples by losses first" in screen_text(app)


async def test_enter_opens_the_highlighted_sample_in_review(config_path: Path) -> None:
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_evaluation(pilot)
        table = screen.query_one(EvaluatedSamplesTable)
        await pilot.press("down", "down", "down")
        wanted = table.current
        assert wanted is not None

        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen), "the review screen")
        review = app.screen
        await wait_for(pilot, lambda: review.pane.detail is not None
                       and review.pane.detail.image.image_id == wanted.image_id, "the sample")
        await settle(pilot, app)

        assert review.pane.detail.task == wanted.task  # type: ignore[union-attr]
        assert review.table.current.key == (wanted.image_id, wanted.task)  # type: ignore[union-attr]
        assert len(review.pane.detail.verdicts) == 2  # type: ignore[union-attr]


async def test_a_store_without_evaluations_says_how_to_make_them(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    build_store(config_path, evaluated=False)
    app = make_app(config_path)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_evaluation(pilot)

        assert screen.query_one(EvaluatedSamplesTable).row_count == 0
        assert "run `visinstruct evaluate`" in screen_text(app)


async def test_at_80x24_every_column_of_both_tables_shows(config_path: Path) -> None:
    app = make_app(config_path)
    async with app.run_test(size=SMALL) as pilot:
        await open_evaluation(pilot)
        lines = screen_text(app).splitlines()

    def line_with(*words: str) -> str:
        return next(line for line in lines if all(word in line for word in words))

    summary = line_with("task", "relative")
    for header in ("task", "n", "relative", "95% CI", "wins", "ties", "losses", "pos. bias",
                   "unparsed"):
        assert header in summary, header
    assert line_with("overall").rstrip().endswith(" 0")  # the last column's value, whole
    samples = line_with("image", "outcome")
    assert samples.rstrip().endswith("unparsed")
