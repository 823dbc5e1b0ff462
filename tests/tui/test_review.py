"""The review screen through Pilot, inside the real app, on a store made by a real pipeline run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input, OptionList, Select, TextArea

from tests.tui.support_screens import (
    PARSE_FAILURE,
    SAMPLES,
    SIZE,
    SMALL,
    build_store,
    make_app,
    open_review,
    query,
    screen_text,
    settle,
    wait_for,
    write_config,
)
from visinstruct.tui.screens.dialogs import ErrorDialog
from visinstruct.tui.screens.review import PAGE_SIZE, ReviewScreen
from visinstruct.tui.widgets.image_preview import HalfBlockImage
from visinstruct.tui.widgets.review_edit import EditPairDialog
from visinstruct.tui.widgets.review_list import SampleTable

pytestmark = pytest.mark.anyio


def judge_script(config_path: Path, rule: dict[str, Any]) -> None:
    """From now on the scripted model answers judge requests by `rule`."""
    config_path.with_name("script.json").write_text(json.dumps({"rules": [rule]}))


async def test_review_opens_on_the_first_page_with_the_first_sample(config_path: Path) -> None:
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_review(pilot)
        await wait_for(pilot, lambda: screen.total is not None, "the count")
        await pilot.pause()
        text = screen_text(app)

        assert screen.table.row_count == PAGE_SIZE
        assert f"Page 1 · {PAGE_SIZE} shown · {SAMPLES} samples" in text
        detail = screen.pane.detail
        assert detail is not None and (detail.image.image_id, detail.task) == (
            990001, "complex_reasoning")
        assert "Image 990001 · complex_reasoning" in text
        assert "Baseline" in text and "Evaluation" in text
        assert app.focused is screen.table


async def test_accept_and_reject_store_decisions_for_the_highlighted_pair(
        config_path: Path) -> None:
    db = config_path.with_name("run.db")
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_review(pilot)
        pairs = screen.pane.detail.pairs  # type: ignore[union-attr]

        await pilot.press("a")
        await wait_for(pilot, lambda: query(db, "SELECT COUNT(*) FROM reviews")[0][0] == 1,
                       "the accept")
        screen.query_one("#ours", OptionList).focus()
        await pilot.press("down", "x")
        await wait_for(pilot, lambda: query(db, "SELECT COUNT(*) FROM reviews")[0][0] == 2,
                       "the reject")
        await wait_for(pilot, lambda: screen.pane.detail.pairs[1].decision == "reject",  # type: ignore[union-attr]
                       "the detail to show the reject")
        await settle(pilot, app)

        assert query(db, "SELECT pair_id, decision FROM reviews ORDER BY id") == [
            (pairs[0].pair_id, "accept"), (pairs[1].pair_id, "reject")]
        text = screen_text(app)
        assert "accepted" in text and "rejected" in text


async def test_edit_dialog_saves_a_human_edit_and_keeps_the_original(config_path: Path) -> None:
    db = config_path.with_name("run.db")
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_review(pilot)
        pair = screen.pane.detail.pairs[0]  # type: ignore[union-attr]
        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: isinstance(app.screen, EditPairDialog), "the edit dialog")
        await pilot.press("escape")  # leaves without writing
        await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen), "the review screen")
        assert query(db, "SELECT COUNT(*) FROM reviews") == [(0,)]

        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: isinstance(app.screen, EditPairDialog), "the edit dialog")
        dialog = app.screen
        assert dialog.query_one("#edit-question", TextArea).text == pair.question
        dialog.query_one("#edit-answer", TextArea).load_text("")
        await pilot.press("ctrl+s")  # an empty answer is refused: the dialog stays
        await pilot.pause()
        assert isinstance(app.screen, EditPairDialog)
        dialog.query_one("#edit-question", TextArea).load_text("What is she cutting?")
        dialog.query_one("#edit-answer", TextArea).load_text("Carrots, on a wooden board.")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: query(db, "SELECT COUNT(*) FROM reviews")[0][0] == 1,
                       "the edit")
        await wait_for(pilot, lambda: screen.pane.detail.pairs[0].edited,  # type: ignore[union-attr]
                       "the detail to show the edit")
        await settle(pilot, app)

        assert query(db, "SELECT decision, question, answer FROM reviews") == [
            ("edit", "What is she cutting?", "Carrots, on a wooden board.")]
        assert query(db, "SELECT question FROM pairs WHERE id = ?", (pair.pair_id,)) == [
            (pair.question,)]
        text = screen_text(app)
        assert "What is she cutting?" in text and "original Q:" in text


async def test_rejudge_key_stores_new_scores_and_shows_them(config_path: Path) -> None:
    db = config_path.with_name("run.db")
    judge_script(config_path, {"match": "^judge", "reply": json.dumps({"scores": [
        {"index": i, "score": 10, "reason": "rejudged"} for i in range(1, 9)]})})
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_review(pilot)
        generation = screen.pane.detail.generation_id  # type: ignore[union-attr]
        before = query(db, "SELECT COUNT(*) FROM judgements WHERE generation_id = ?",
                       (generation,))[0][0]

        await pilot.press("j")
        await wait_for(pilot, lambda: all(p.score == 10 for p in screen.pane.detail.pairs),  # type: ignore[union-attr]
                       "the new scores")
        await settle(pilot, app)

        after = query(db, "SELECT COUNT(*) FROM judgements WHERE generation_id = ?",
                      (generation,))[0][0]
        assert after == 2 * before
        assert "judge: rejudged" in screen_text(app)


async def test_a_failed_rejudge_shows_a_dialog_not_a_traceback(config_path: Path) -> None:
    judge_script(config_path, {"match": "^judge", "error": "permanent"})
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        await open_review(pilot)

        await pilot.press("j")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog), "the error dialog")

        dialog = app.screen
        assert dialog.title_text == "Model call failed"
        assert "re-judging image 990001" in dialog.message
        assert "Traceback" not in screen_text(app)


async def test_state_and_score_filters_reload_the_list(config_path: Path) -> None:
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_review(pilot)

        await pilot.press("slash")
        assert app.focused is screen.query_one("#filter-text", Input)
        screen.query_one("#filter-state", Select).value = "parse_failure"
        await wait_for(pilot, lambda: screen.table.row_count == 1, "the parse failure filter")
        await settle(pilot, app)
        assert screen.table.current.key == PARSE_FAILURE  # type: ignore[union-attr]
        assert "parse failure" in screen_text(app)

        screen.query_one("#filter-state", Select).value = Select.NULL
        screen.query_one("#filter-min", Input).focus()
        await pilot.press("8", "enter")
        await wait_for(pilot, lambda: screen.filters.min_score == 8, "the score filter")
        await settle(pilot, app)
        rows = screen.table.rows_shown
        assert rows and all((r.mean_score or 0) >= 8 for r in rows)

        screen.query_one("#filter-max", Input).value = "eleven"
        screen.query_one("#filter-max", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert screen.filters.max_score is None
        assert any("not a number from 0 to 10" in str(n.message)
                   for n in app._notifications)


async def test_search_finds_a_sample_by_a_word_of_its_answer(config_path: Path) -> None:
    db = config_path.parent / "run.db"
    rows = query(db, "SELECT g.image_id, g.task, p.answer FROM pairs p "
                     "JOIN generations g ON g.id = p.generation_id WHERE g.purpose = 'run'")
    samples_with: dict[str, set[tuple[int, str]]] = {}
    for image_id, task, answer in rows:
        for word in set(answer.lower().replace(".", " ").replace(",", " ").split()):
            samples_with.setdefault(word, set()).add((image_id, task))
    word, (target,) = next((w, keys) for w, keys in sorted(samples_with.items())
                           if len(keys) == 1 and len(w) > 5 and w.isalpha())
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_review(pilot)
        await pilot.press("slash")
        box = screen.query_one("#filter-text", Input)
        assert app.focused is box
        box.value = word.upper()  # case does not matter
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.filters.text == word.upper(), "the search")
        await settle(pilot, app)
        assert [row.key for row in screen.table.rows_shown] == [target]
        # Enter gave the keys back to the list: the next key acts, it is not typed.
        assert app.focused is screen.table
        await pilot.press("a")
        await wait_for(pilot, lambda: query(db, "SELECT COUNT(*) FROM reviews")[0][0] == 1,
                       "the accept after the search")
        assert box.value == word.upper()


async def test_paging_forward_and_back(config_path: Path) -> None:
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_review(pilot)
        first = screen.table.rows_shown[-1].key

        await pilot.press("n")
        await wait_for(pilot, lambda: screen.table.row_count == SAMPLES - PAGE_SIZE, "page 2")
        await settle(pilot, app)
        assert screen.table.rows_shown[0].key > first
        assert "Page 2" in screen_text(app)

        await pilot.press("n")
        await pilot.pause()
        assert any("last page" in str(n.message) for n in app._notifications)

        await pilot.press("b")
        await wait_for(pilot, lambda: screen.table.row_count == PAGE_SIZE, "page 1 again")
        await settle(pilot, app)
        assert screen.table.rows_shown[-1].key == first


async def test_open_review_shows_that_sample_and_moves_the_list_to_it(config_path: Path) -> None:
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_review(pilot)

        await app.open_review(990020, "detail")
        await wait_for(pilot, lambda: screen.pane.detail.image.image_id == 990020,  # type: ignore[union-attr]
                       "the opened sample")
        await settle(pilot, app)

        assert screen.pane.detail.task == "detail"  # type: ignore[union-attr]
        assert screen.table.current.key == (990020, "detail")  # type: ignore[union-attr]
        await pilot.press("t")
        await wait_for(pilot, lambda: screen.pane.detail.task == "complex_reasoning",  # type: ignore[union-attr]
                       "the next task")


async def test_review_works_at_80_by_24(config_path: Path) -> None:
    db = config_path.with_name("run.db")
    app = make_app(config_path)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_review(pilot)
        text = screen_text(app)

        assert "990001" in text and "Image 990001" in text
        assert screen.query_one(SampleTable).size.width == 80
        await pilot.press("a")
        await wait_for(pilot, lambda: query(db, "SELECT COUNT(*) FROM reviews")[0][0] == 1,
                       "the accept")


async def test_the_picture_shows_in_half_blocks_when_images_dir_has_it(tmp_path: Path) -> None:
    from PIL import Image as PILImage

    images = tmp_path / "images"
    images.mkdir()
    picture = PILImage.new("RGB", (64, 48), (200, 30, 30))
    picture.paste((20, 40, 220), (0, 24, 64, 48))
    picture.save(images / "000000990001.jpg", format="PNG")  # exact colours; opened by content
    config_path = write_config(tmp_path, images_dir=images)
    build_store(config_path, evaluated=False)
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_review(pilot)
        await wait_for(pilot, lambda: bool(screen.query(HalfBlockImage)), "the picture")
        await settle(pilot, app)

        drawn = screen.query_one(HalfBlockImage).render()
        assert "▀" in drawn.plain
        colours = {str(span.style) for span in drawn.spans}
        assert any("#c81e1e" in c for c in colours), colours
        assert any("#1428dc" in c for c in colours), colours
