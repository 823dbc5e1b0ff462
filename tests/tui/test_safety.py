"""The app does only what it says (following another process: tests/tui/test_store_owner.py):
editors keep their keys, review acts on
what is shown, and a second quit leaves at once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual.widgets import Input, Select, TextArea

from visinstruct.tests.tui.support_monitor import SAMPLE_UNITS, press_start
from visinstruct.tests.tui.support_monitor import make_app as make_monitor_app
from visinstruct.tests.tui.support_monitor import write_config as write_run_config
from visinstruct.tests.tui.support_screens import (
    SIZE,
    make_app,
    open_lab,
    open_review,
    query,
    screen_text,
    settle,
    wait_for,
)
from visinstruct.tui.screens.dialogs import ConfirmDialog
from visinstruct.tui.screens.evaluation import EvaluationScreen
from visinstruct.tui.screens.monitor import MonitorScreen
from visinstruct.tui.screens.prompt_lab import PromptLabScreen
from visinstruct.tui.widgets.review_filters import ReviewFilters

pytestmark = pytest.mark.anyio


async def test_starting_shows_what_will_run_and_asks_first(tmp_path: Path) -> None:
    config = write_run_config(tmp_path)
    app = make_monitor_app(config)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the question")
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog)
        assert "generation fake, judge fake" in dialog.question
        assert "The store holds no images yet" in dialog.question  # a new store: indexed first
        # The bundled sample is small: counted before the run, as the run will count it.
        assert f"then all {SAMPLE_UNITS} units run" in dialog.question
        assert query(tmp_path / "run.db", "SELECT COUNT(*) FROM images") == [(0,)]  # aside
        await pilot.press("n")
        await pilot.pause(0.2)
        assert not app.run_active and isinstance(app.screen, MonitorScreen)


async def test_e_typed_in_the_editor_stays_text_and_escape_leaves_it(config_path: Path) -> None:
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_lab(pilot)
        editor = screen.editor
        editor.focus()
        editor.move_cursor(editor.document.end)
        saved = editor.text
        await pilot.press("e", "m", "r")

        assert isinstance(app.screen, PromptLabScreen)
        assert editor.text == saved + "emr"
        assert "edited" in screen_text(app)
        await pilot.press("backspace", "backspace", "backspace")
        assert editor.text == saved
        assert "unchanged" in screen_text(app)  # the status follows the text back

        await pilot.press("escape")
        assert not isinstance(app.focused, (TextArea, Input))
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EvaluationScreen), "the eval screen")


async def test_function_keys_switch_screens_from_inside_an_editor(config_path: Path) -> None:
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_lab(pilot)
        screen.editor.focus()
        before = screen.editor.text
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), "the monitor")
        assert screen.editor.text == before


async def test_x_with_no_visible_sample_does_nothing(config_path: Path) -> None:
    db = config_path.with_name("run.db")
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_review(pilot)
        filters = screen.query_one(ReviewFilters)
        filters.query_one("#filter-state", Select).value = "reviewed"  # nothing reviewed yet
        await wait_for(pilot, lambda: screen.table.row_count == 0, "the empty list")
        await settle(pilot, app)
        await pilot.press("escape", "x", "a", "c")
        await settle(pilot, app)

        assert screen.pane.detail is None and screen.pane.disabled
        assert "No samples match these filters." in screen_text(app)
        assert query(db, "SELECT COUNT(*) FROM reviews")[0][0] == 0

        await pilot.press("ctrl+l")  # clear filters: the samples come back
        await wait_for(pilot, lambda: screen.table.row_count > 0 and screen.pane.detail is not None,
                       "the list after clearing the filters")


async def test_undo_and_clear_take_a_decision_back(config_path: Path) -> None:
    db = config_path.with_name("run.db")
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_review(pilot)

        def decisions() -> list[str]:
            return [r[0] for r in query(db, "SELECT decision FROM reviews ORDER BY id")]

        await pilot.press("right_square_bracket", "x")  # the second pair, from the list
        await wait_for(pilot, lambda: decisions() == ["reject"], "the reject")
        second = screen.pane.detail.pairs[1].pair_id  # type: ignore[union-attr]
        assert query(db, "SELECT pair_id FROM reviews")[0][0] == second
        await pilot.press("u")
        await wait_for(pilot, lambda: decisions() == [], "the undo")
        await pilot.press("a")
        await wait_for(pilot, lambda: decisions() == ["accept"], "the accept")
        await wait_for(pilot, lambda: screen.pane.selected_pair is not None
                       and screen.pane.selected_pair.decision == "accept", "the shown accept")
        await pilot.press("c")
        await wait_for(pilot, lambda: decisions() == [], "the clear")
        await pilot.press("u")
        await wait_for(pilot, lambda: decisions() == ["accept"], "the clear undone")


async def test_a_second_quit_while_stopping_exits_at_once(tmp_path: Path) -> None:
    # Every call takes 3 s: the stop waits for calls in flight, the second quit does not.
    app = make_monitor_app(write_run_config(tmp_path, latency=3.0, max_in_flight=1))
    async with app.run_test(size=SIZE) as pilot:
        await press_start(pilot, app)
        await wait_for(pilot, lambda: bool(app.state.lanes), "a call in flight")
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the quit question")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.runs.stopping, "the run to be stopping")
        asked = time.monotonic()
        await pilot.press("q")
        assert app.return_code == 3  # quit mid-run: interrupted, as headless says it
        assert time.monotonic() - asked < 1.5
        assert app.runs.active  # the call still hangs; the app did not wait for it
