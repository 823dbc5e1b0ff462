"""The prompt lab through Pilot, inside the real app, on a store made by a real pipeline run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Button, Checkbox, Input, Select, TextArea

from tests.tui.support_screens import (
    SIZE,
    SMALL,
    make_app,
    open_lab,
    query,
    screen_text,
    settle,
    wait_for,
)
from visinstruct.core.text.prompts import load_prompt
from visinstruct.tui.screens.dialogs import ErrorDialog
from visinstruct.tui.screens.prompt_lab import parse_image_ids
from visinstruct.tui.widgets.lab_results import LabSamplesTable, VersionTable

pytestmark = pytest.mark.anyio


def cells(table: LabSamplesTable | VersionTable) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def test_the_lab_opens_on_the_saved_conversation_prompt(config_path: Path) -> None:
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_lab(pilot)

        saved = load_prompt("conversation")
        assert screen.editor.text == saved.text
        assert f"saved version {saved.version} is the one runs use" in screen_text(app)
        assert cells(screen.query_one(VersionTable))[0][:3] == [
            f"active {saved.version[:8]}", "all", "24"]

        screen.query_one("#lab-prompt", Select).value = "judge"
        await wait_for(pilot, lambda: screen.editor.text == load_prompt("judge").text,
                       "the judge prompt")


async def test_run_a_trial_then_save_it_for_runs(config_path: Path) -> None:
    db = config_path.with_name("run.db")
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_lab(pilot)
        text = screen.editor.text.replace("3 to 5 turns", "2 to 4 turns")
        screen.editor.load_text(text)
        screen.query_one("#lab-images", Input).value = "990001, 990004"
        screen.query_one("#lab-evaluate", Checkbox).value = True

        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: screen.result is not None, "the trial")
        await settle(pilot, app)

        result = screen.result
        assert result is not None and result.purpose == "lab:1"
        rows = cells(screen.query_one(LabSamplesTable))
        assert [r[0] for r in rows] == ["990001", "990001", "990004", "990004"]
        assert [r[2] for r in rows] == ["trial", "saved"] * 2
        # Samples with a kept pair were compared with the baseline; the others say why not.
        kept = {(s.image_id, s.version) for s in result.trial_samples + result.saved_samples
                if s.kept}
        assert kept
        assert sum("vs base" in r[7] for r in rows) == len(kept)
        versions = cells(screen.query_one(VersionTable))
        assert ["trial", "these"] == [versions[1][0].split()[0], versions[1][1]]
        # The trial's data is the lab's: no "all" (run data) row for a version only a trial used.
        assert not any(r[0] == f"trial {result.version[:8]}" and r[1] == "all" for r in versions)
        assert "trial 1 done" in screen_text(app)

        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.saved is not None
                       and screen.saved.version == result.version, "the save")
        await settle(pilot, app)
        assert query(db, "SELECT version, chosen_by FROM active_prompts WHERE name = "
                     "'conversation'") == [(result.version, "user")]


async def test_ctrl_r_again_stops_a_trial(config_path: Path) -> None:
    config_path.with_name("script.json").write_text(json.dumps({"rules": [
        {"match": "^generate", "latency": 0.3}]}))
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_lab(pilot)
        screen.query_one("#lab-images", Input).value = ", ".join(str(990001 + i) for i in range(12))
        screen.editor.load_text(screen.editor.text.replace("3 to 5 turns", "2 to 4 turns"))

        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: str(screen.query_one("#lab-run", Button).label) == "Stop",
                       "the trial to start")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: screen.result is not None, "the stopped trial")
        await settle(pilot, app)

        assert screen.result is not None and screen.result.cancelled
        assert len(screen.result.trial_samples) < 12
        assert "trial 1 stopped" in screen_text(app)
        assert str(screen.query_one("#lab-run", Button).label) == "Run"


async def test_random_button_fills_in_three_images(config_path: Path) -> None:
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_lab(pilot)

        await pilot.click("#lab-random")
        await wait_for(pilot, lambda: bool(screen.query_one("#lab-images", Input).value),
                       "the random images")

        ids = parse_image_ids(screen.query_one("#lab-images", Input).value)
        assert len(set(ids)) == 3 and all(990001 <= i <= 990024 for i in ids)


async def test_invalid_toml_shows_a_dialog_naming_the_problem(config_path: Path) -> None:
    db = config_path.with_name("run.db")
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_lab(pilot)
        screen.editor.load_text(screen.editor.text.replace('task = "conversation"', "task = "))

        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog), "the error dialog")

        dialog = app.screen
        assert dialog.title_text == "Bad configuration"
        assert "edited conversation prompt: not valid TOML" in dialog.message
        assert "Traceback" not in screen_text(app)
        await pilot.press("escape")
        assert query(db, "SELECT COUNT(*) FROM active_prompts WHERE chosen_by = 'user'") == [(0,)]


async def test_bad_image_ids_show_a_dialog(config_path: Path) -> None:
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_lab(pilot)
        screen.query_one("#lab-images", Input).value = "990001, twelve"

        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog), "the error dialog")
        assert "image id 'twelve' is not a number" in app.screen.message
        await pilot.press("escape")

        screen.query_one("#lab-images", Input).value = "990001, 7"
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog), "the second dialog")
        assert "image ids not in" in app.screen.message and ": 7" in app.screen.message


async def test_the_lab_works_at_80_by_24(config_path: Path) -> None:
    app = make_app(config_path)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_lab(pilot)
        screen.query_one("#lab-images", Input).value = "990002"
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: screen.result is not None, "the trial")
        await settle(pilot, app)

        text = screen_text(app)
        assert "Run" in text and "Save" in text and "990002" in text
        assert screen.query_one(TextArea).outer_size.width == 80


async def test_the_picture_box_asks_for_a_model_that_sees(config_path: Path) -> None:
    # The test config's models are blind: comparing with and without the picture says why not.
    app = make_app(config_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_lab(pilot)
        screen.query_one("#lab-images", Input).value = "990001"
        screen.query_one("#lab-picture", Checkbox).value = True

        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog), "the error dialog")
        assert "not shown pictures" in app.screen.message and "vision = true" in app.screen.message
        await pilot.press("escape")
