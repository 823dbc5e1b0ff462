"""The app shell through Pilot: mode keys, help, quitting with and without a run, the command
palette, error dialogs, and the `visinstruct tui` / `run` arguments."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from textual.command import CommandList, CommandPalette

from tests.tui.support_monitor import (
    SIZE,
    make_app,
    press_start,
    run_pipeline,
    screen_text,
    store_figures,
    wait_for,
    write_config,
)
from visinstruct.core.cli.main import build_parser
from visinstruct.core.errors import InputError
from visinstruct.tui.app import VisinstructApp, context_from_args
from visinstruct.tui.screens.dialogs import ConfirmDialog, ErrorDialog
from visinstruct.tui.screens.help import HelpScreen
from visinstruct.tui.screens.monitor import MonitorScreen

pytestmark = pytest.mark.anyio
ENDED = ("finished", "interrupted", "failed", "budget")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio


async def test_mode_keys_switch_screens_and_monitor_is_home(tmp_path: Path) -> None:
    app = make_app(write_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        assert app.current_mode == "monitor"
        assert isinstance(app.screen, MonitorScreen)
        for key, mode in (("r", "review"), ("p", "lab"), ("e", "evaluation"), ("m", "monitor")):
            await pilot.press(key)
            await wait_for(pilot, lambda mode=mode: app.current_mode == mode, f"mode {mode}")
        assert isinstance(app.screen, MonitorScreen)


async def test_question_mark_lists_every_key_of_every_screen(tmp_path: Path) -> None:
    app = make_app(write_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
        listed = {text for _, rows in app.help_sections() for _, text in rows}
        for binding in [*VisinstructApp.BINDINGS, *MonitorScreen.BINDINGS]:
            assert (binding.tooltip or binding.description) in listed
        shown = screen_text(app)
        assert "Start or resume a run" in shown and "Command palette" in shown
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), "help to close")


async def test_q_quits_at_once_when_no_run_is_going(tmp_path: Path) -> None:
    app = make_app(write_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await wait_for(pilot, lambda: app._exit, "the app to exit")
    assert app.return_code == 0


async def test_q_during_a_run_asks_then_stops_the_run_cleanly(tmp_path: Path) -> None:
    # Slow calls: Pilot waits for the process to go idle after each key, which a run never does.
    app = make_app(write_config(tmp_path, latency=0.1, max_in_flight=2))
    async with app.run_test(size=SIZE) as pilot:
        await press_start(pilot, app)
        await wait_for(pilot, lambda: app.state.done_units >= 2, "the run to make progress")

        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the quit question")
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), "the dialog to close")
        assert app.run_active and not app._exit

        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the quit question")
        await pilot.press("y")
        await wait_for(pilot, lambda: app._exit, "the app to exit", 30)
    assert not app.run_active
    assert store_figures(tmp_path / "run.db")["status"] == "interrupted"
    assert app.return_code == 3  # as a headless run stopped by Ctrl-C


async def test_command_palette_lists_every_action_and_runs_them(tmp_path: Path) -> None:
    app = make_app(write_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        titles = [command.title for command in app.get_system_commands(app.screen)]
        for expected in ("Go to Run monitor", "Go to Review", "Go to Prompt lab",
                         "Go to Evaluation", "Start run", "Pause or resume run", "Stop run",
                         "Keys", "Quit", "Review: Accept", "Prompt lab: Save version"):
            assert expected in titles

        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
        await pilot.press(*"start run")
        palette = app.screen
        await wait_for(pilot, lambda: palette.query_one(CommandList).option_count > 0,
                       "palette matches")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the question")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.state.status in ENDED, "the run the palette started")
        assert app.state.status == "finished"

        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
        await pilot.press(*"go to evaluation")
        palette = app.screen
        await wait_for(pilot, lambda: palette.query_one(CommandList).option_count > 0,
                       "palette matches")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.current_mode == "evaluation", "the evaluation screen")


async def test_a_failing_run_shows_a_titled_dialog_not_a_traceback(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    app = make_app(config)
    (tmp_path / "run-script.json").unlink()  # the scripted model's file vanishes after loading
    async with app.run_test(size=SIZE) as pilot:
        await press_start(pilot, app)
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog), "the error dialog")
        dialog = app.screen
        assert isinstance(dialog, ErrorDialog)
        assert dialog.title_text == "Bad configuration"
        assert "run-script.json" in dialog.message
        assert app.state.status == "failed"
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), "the dialog to close")
        assert not app._exit


async def test_show_error_is_a_dialog_for_every_screen(tmp_path: Path) -> None:
    app = make_app(write_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        app.show_error("Export failed", "out.json: cannot write; check the folder exists")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog)
                       and bool(app.screen.query(".dialog-title")), "the dialog")
        assert app.screen.query_one(".dialog-title").render().plain == "Export failed"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), "the dialog to close")


async def test_start_pause_stop_without_a_run_only_notify(tmp_path: Path) -> None:
    app = make_app(write_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("space", "x")
        await pilot.pause()
        assert not app.run_active and app.state.status == "none"
        messages = [n.message for n in app._notifications]
        assert messages.count("No run is going.") == 2


async def test_the_monitor_opens_on_what_the_store_already_holds(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    db = run_pipeline(config)
    app = make_app(config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status == "finished", "the store's last run")
        assert app.state.judged_pairs == store_figures(db)["judged"]
        assert not app.following


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_tui_with_db_opens_the_store_and_run_without_headless_starts(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    db = run_pipeline(config)

    ctx, autostart = context_from_args(parse("tui", "--db", str(db)))
    assert not autostart and ctx.db_path == db and not ctx.chosen

    ctx, autostart = context_from_args(parse("run", "--config", str(config), "--limit", "3"))
    assert autostart and ctx.config.source.limit == 3

    ctx, autostart = context_from_args(parse("tui", "--config", str(config),
                                             "--set", "judge.threshold=8"))
    assert ctx.chosen and ctx.config.judge.threshold == 8 and ctx.db_path == db

    with pytest.raises(InputError, match="no such store"):
        context_from_args(parse("tui", "--db", str(tmp_path / "missing.db")))
