"""Blind review through Pilot: decisions made in the app give the judge's agreement with a human."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.tui.support_screens import (
    SIZE,
    make_app,
    open_evaluation,
    open_review,
    query,
    screen_text,
    wait_for,
)
from visinstruct.core.analysis.agreement import stored_judge_agreement
from visinstruct.core.review.blind import blind_sample, record_blind_decision
from visinstruct.core.store.database import Store
from visinstruct.tui.screens.blind_review import BlindReviewScreen
from visinstruct.tui.screens.review import ReviewScreen

pytestmark = pytest.mark.anyio
THRESHOLD = 7
DECISIONS = 8


def latest_score(db: Path, pair_id: int) -> float:
    rows = query(db, "SELECT score FROM judgements WHERE pair_id = ? ORDER BY id DESC LIMIT 1",
                 (pair_id,))
    return float(rows[0][0])


async def test_blind_decisions_in_the_app_give_kappa_and_its_interval(config_path: Path) -> None:
    db = config_path.with_name("run.db")
    app = make_app(config_path)
    made: list[tuple[float, bool]] = []
    async with app.run_test(size=SIZE) as pilot:
        review = await open_review(pilot)
        review.blind_seed = 5   # the same draw every time
        await pilot.press("B")
        await wait_for(pilot, lambda: isinstance(app.screen, BlindReviewScreen)
                       and app.screen.current is not None, "the first blind pair")
        blind = app.screen
        assert isinstance(blind, BlindReviewScreen)
        for n in range(DECISIONS):
            pair = blind.current
            assert pair is not None
            text = screen_text(app)
            # The pair is there; its score, the judge's reason and kept/dropped are not.
            assert pair.question.split("\n")[0][:30] in text
            assert not re.search(r"score \d|judge:|\bkept\b|\bdropped\b", text)
            score = latest_score(db, pair.pair_id)
            # Agree with the judge except on the first and the fourth pair.
            accepted = (score >= THRESHOLD) != (n in (0, 3))
            made.append((score, accepted))
            await pilot.press("a" if accepted else "x")
            await wait_for(pilot, lambda shown=pair: blind.current is not shown, "the next pair")
        await wait_for(pilot, lambda: blind.decided == DECISIONS, "the decisions to be stored")
        assert f"{DECISIONS} decided now" in screen_text(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen), "the review screen")
        evaluation = await open_evaluation(pilot)
        await wait_for(pilot, lambda: evaluation.agreement is not None, "the agreement")
        shown = screen_text(app)

    rows = query(db, "SELECT decision FROM reviews WHERE blind = 1 ORDER BY id")
    assert [r[0] == "accept" for r in rows] == [a for _, a in made]
    # Kappa by hand from the 2x2 table of kept (score >= 7) against accepted.
    kept = [s >= THRESHOLD for s, _ in made]
    accepted = [a for _, a in made]
    both = sum(k and a for k, a in zip(kept, accepted, strict=True))
    neither = sum(not k and not a for k, a in zip(kept, accepted, strict=True))
    observed = (both + neither) / DECISIONS
    pk, pa = sum(kept) / DECISIONS, sum(accepted) / DECISIONS
    chance = pk * pa + (1 - pk) * (1 - pa)
    kappa = (observed - chance) / (1 - chance)
    with Store(db) as store:
        agreement = stored_judge_agreement(store, THRESHOLD)
    assert agreement.n == DECISIONS
    assert agreement.kappa == pytest.approx(kappa)
    assert agreement.precision == pytest.approx(both / sum(kept))
    assert agreement.recall == pytest.approx(both / sum(accepted))
    assert agreement.kappa_ci is not None
    low, high = agreement.kappa_ci
    assert -1 <= low <= high <= 1
    assert f"kappa {kappa:.2f} [{low:.2f}, {high:.2f}]" in shown
    assert f"n {DECISIONS} blind decisions" in shown


async def test_skipping_moves_on_and_a_new_batch_never_repeats_a_shown_pair(
        config_path: Path) -> None:
    db = config_path.with_name("run.db")
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await open_review(pilot)
        await app.push_screen(BlindReviewScreen(seed=2, batch=2))
        blind = app.screen
        assert isinstance(blind, BlindReviewScreen)
        await wait_for(pilot, lambda: blind.current is not None, "the first blind pair")
        seen = []
        for _ in range(5):   # two batches and a half
            pair = blind.current
            assert pair is not None
            seen.append(pair.pair_id)
            await pilot.press("s")
            await wait_for(pilot, lambda shown=pair: blind.current is not None
                           and blind.current is not shown, "the next pair")
        assert len(set(seen)) == 5
        await pilot.press("x")
        await wait_for(pilot, lambda: blind.decided == 1, "the decision")
    # Skips write nothing; the one reject is stored as a blind decision.
    assert query(db, "SELECT COUNT(*) FROM reviews WHERE blind = 1 AND decision = 'reject'") == [
        (1,)]
    assert query(db, "SELECT COUNT(*) FROM reviews WHERE blind = 1") == [(1,)]


async def test_a_skipped_pair_comes_again_once_every_other_pair_is_decided(
        config_path: Path) -> None:
    db = config_path.with_name("run.db")
    with Store(db) as store:  # every judged pair decided but two
        for pair in blind_sample(store, 100_000)[2:]:
            record_blind_decision(store, pair.pair_id, "accept")
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await open_review(pilot)
        await app.push_screen(BlindReviewScreen(seed=3))
        blind = app.screen
        assert isinstance(blind, BlindReviewScreen)
        await wait_for(pilot, lambda: blind.current is not None, "the first blind pair")
        skipped = blind.current
        assert skipped is not None and len(blind.queue) == 1
        await pilot.press("s")
        await wait_for(pilot, lambda: blind.current is not skipped, "the other pair")
        assert "1 skipped" in screen_text(app)
        await pilot.press("x")
        # Nothing new is left, but the skipped pair has no decision: it comes again.
        await wait_for(pilot, lambda: blind.current is not None
                       and blind.current.pair_id == skipped.pair_id, "the skipped pair again")
        text = screen_text(app)
        assert "every current judged pair has a decision" not in text
        assert "1 decided now" in text
        await pilot.press("a")
        await wait_for(pilot, lambda: blind.finished and blind.current is None, "the end")
        await pilot.pause(0.2)
        assert "every current judged pair has a decision" in screen_text(app)
    assert query(db, "SELECT COUNT(*) FROM reviews WHERE blind = 1 AND pair_id = ?",
                 (skipped.pair_id,)) == [(1,)]


def test_counts_are_worded_in_the_singular_for_one() -> None:
    from visinstruct.core.pipeline.tally import counted

    assert counted(1, "blind decision") == "1 blind decision"
    assert counted(2, "blind decision") == "2 blind decisions"
    assert counted(1, "pair") == "1 pair" and counted(1_200, "pair") == "1,200 pairs"
