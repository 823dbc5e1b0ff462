"""Snapshot tests of the review, prompt lab and evaluation screens at 120x40 on a frozen store.

The store comes from a real pipeline run and evaluation with one worker (so its order is
fixed) and fixed clock columns; the app reads it once and runs no timers. The scripted
model answers from a hash of each prompt, so a change to a packaged prompt changes these
pictures: review the difference, then update with `pytest --snapshot-update`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from tests.tui.support_screens import (
    SIZE,
    build_store,
    make_app,
    open_evaluation,
    open_lab,
    open_review,
    settle,
    wait_for,
    write_config,
)
from visinstruct.tui.app import VisinstructApp


@pytest.fixture
def frozen_app(tmp_path: Path) -> VisinstructApp:
    config = write_config(tmp_path, max_in_flight=1)
    build_store(config)
    return make_app(config, frozen=True)


def test_review_screen(snap_compare: Any, frozen_app: VisinstructApp) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        screen = await open_review(pilot)
        await wait_for(pilot, lambda: screen.total is not None, "the count")
        await pilot.press("down")  # a conversation: several pairs beside the baseline's
        await wait_for(pilot, lambda: screen.pane.detail is not None
                       and screen.pane.detail.task == "conversation", "the conversation")
        await settle(pilot, frozen_app)

    assert snap_compare(frozen_app, terminal_size=SIZE, run_before=run_before)


def test_prompt_lab_screen_after_a_trial(snap_compare: Any, frozen_app: VisinstructApp) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        screen = await open_lab(pilot)
        screen.editor.load_text(screen.editor.text.replace("3 to 5 turns", "2 to 4 turns"))
        screen.query_one("#lab-images", Input).value = "990001, 990004, 990005"
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: screen.result is not None, "the trial")
        await settle(pilot, frozen_app)

    assert snap_compare(frozen_app, terminal_size=SIZE, run_before=run_before)


def test_evaluation_screen(snap_compare: Any, frozen_app: VisinstructApp) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await open_evaluation(pilot)

    assert snap_compare(frozen_app, terminal_size=SIZE, run_before=run_before)
