"""Who writes the store the app opens: the app itself (it holds the writer lock and offers Start),
or another live process (the app follows its run and says which pid). Never a stored pid."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import OptionList

from tests.tui.support_monitor import (
    SAMPLE_UNITS,
    SIZE,
    make_app,
    press_start,
    run_pipeline,
    screen_text,
    store_figures,
    wait_for,
    wait_for_redraw,
    write_config,
)
from tests.tui.support_screens import query
from visinstruct.core.cli.main import build_parser
from visinstruct.core.cli.main import main as cli_main
from visinstruct.core.errors import StoreError
from visinstruct.core.store.writer_lock import holder_pid
from visinstruct.tui.app import VisinstructApp, context_from_args
from visinstruct.tui.screens.dialogs import ConfirmDialog
from visinstruct.tui.screens.review import ReviewScreen

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.anyio
# A process that holds a store's writer lock until its stdin closes.
HOLD_LOCK = ("import sys\nfrom visinstruct.core.store.writer_lock import writer_lock\n"
             "with writer_lock(sys.argv[1]):\n    print('held', flush=True)\n"
             "    sys.stdin.read()\n")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    """A store made by `prepare` (images indexed, no run yet), as the README makes one."""
    config = write_config(tmp_path)
    assert cli_main(["prepare", "--config", str(config)]) == 0
    return config


@pytest.fixture
def lock_holder(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Another process holding the writer lock of tmp_path/run.db (a store made first)."""
    config = write_config(tmp_path)
    run_pipeline(config)
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / "run.db")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"held\n"
        yield proc
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=30)


def footer_keys(app: VisinstructApp) -> str:
    return screen_text(app).splitlines()[-1]


def tui_app(*argv: str) -> VisinstructApp:
    ctx, autostart = context_from_args(build_parser().parse_args(["tui", *argv]))
    ctx.poll_seconds = 0.1
    return VisinstructApp(ctx, autostart=autostart)


async def test_a_prepared_store_opened_with_db_offers_start_and_holds_the_lock(
        prepared: Path, tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    app = tui_app("--db", str(db))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_redraw(pilot, app)
        assert app.ownership.owned and not app.attached and not app.following
        assert app.sub_title == "run.db · this window writes it"
        await wait_for(pilot, lambda: "Start" in footer_keys(app), "Start in the footer")
        text = screen_text(app)
        assert "no run yet" in text and "following" not in text and "read-only" not in text
        # A headless run started meanwhile is refused: the app holds the writer lock.
        probe = subprocess.run([sys.executable, "-c", "import sys\nfrom visinstruct.core.store."
                                "writer_lock import holder_pid\nprint(holder_pid(sys.argv[1]))",
                                str(db)], capture_output=True, text=True, cwd=REPO, check=True)
        assert probe.stdout.strip() == str(__import__("os").getpid())
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the start question")
        # The run would use the config `prepare --config` was given, and the dialog says so.
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog)
        assert (f"Config: the config `prepare` recorded in {db} (from {prepared.resolve()})"
                in dialog.question)
        assert "Models: generation fake, judge fake" in dialog.question
    assert holder_pid(db) is None  # let go when the app closed


async def test_a_prepared_store_runs_after_the_confirmation(prepared: Path,
                                                            tmp_path: Path) -> None:
    app = make_app(prepared)
    async with app.run_test(size=SIZE) as pilot:
        await press_start(pilot, app)
        await wait_for(pilot, lambda: app.state.status == "finished", "the run to end", 60)
        await wait_for_redraw(pilot, app)
        assert f"{SAMPLE_UNITS}/{SAMPLE_UNITS} units" in screen_text(app)
    assert store_figures(tmp_path / "run.db")["status"] == "finished"


async def test_a_finished_store_is_owned_and_never_names_its_dead_writer(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    db = run_pipeline(config)
    with sqlite3.connect(db) as conn:  # the run row remembers a process long gone
        conn.execute("UPDATE runs SET pid = 999999")
    conn.close()
    app = tui_app("--db", str(db))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status == "finished", "the store's run")
        await wait_for_redraw(pilot, app)
        text = screen_text(app)
        assert app.sub_title == "run.db · this window writes it"
        assert "999999" not in text and "following" not in text
        await wait_for(pilot, lambda: "Start" in footer_keys(app), "Start in the footer")
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the start question")
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog) and "0 of 72 units left" in dialog.question


async def test_a_killed_run_shows_as_interrupted_not_running(tmp_path: Path) -> None:
    db = run_pipeline(write_config(tmp_path))
    with sqlite3.connect(db) as conn:  # what a SIGKILL leaves: a row that says running
        conn.execute("UPDATE runs SET status = 'running', finished_at = NULL")
    conn.close()
    app = tui_app("--db", str(db))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.run_id is not None, "the store's run")
        await wait_for_redraw(pilot, app)
        assert app.state.status == "interrupted" and app.ownership.owned


async def test_a_store_another_process_writes_is_followed_then_taken_over(
        tmp_path: Path, lock_holder: subprocess.Popen[bytes]) -> None:
    db = tmp_path / "run.db"
    app = tui_app("--db", str(db))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.run_id is not None, "the followed run")
        await wait_for_redraw(pilot, app)
        assert app.attached and app.following and not app.ownership.owned
        assert app.sub_title == f"run.db · following run 1 of pid {lock_holder.pid}"
        assert f"written by pid {lock_holder.pid}" in screen_text(app)
        for control in ("Start", "Pause", "Stop"):
            assert control not in footer_keys(app), control
        await pilot.press("s", "space", "x")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ConfirmDialog) and not app.run_active
        said = [n.message for n in app._notifications]
        assert said.count(f"pid {lock_holder.pid} is writing this store: start, pause and "
                          "stop its run there.") == 3, said

        # Review decisions are the user's: allowed while following, and stored.
        await pilot.press("r")  # (the follower's worker never settles: wait on the screen)
        await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen)
                       and bool(app.screen.table.row_count)
                       and app.screen.pane.detail is not None, "the review screen")
        screen = app.screen
        assert isinstance(screen, ReviewScreen)
        await pilot.pause(0.3)
        screen.query_one("#ours", OptionList).focus()
        await pilot.press("a")
        await wait_for(pilot, lambda: query(db, "SELECT COUNT(*) FROM reviews")[0][0] == 1,
                       "the accept, stored")
        await pilot.press("m")

        assert lock_holder.stdin is not None
        lock_holder.stdin.close()  # the other writer ends: this window takes the store
        lock_holder.wait(timeout=30)
        await wait_for(pilot, lambda: app.ownership.owned, "the app to take the store over")
        await wait_for(pilot, lambda: "written by" not in screen_text(app), "the monitor")
        assert app.sub_title == "run.db · this window writes it" and not app.following
        await wait_for(pilot, lambda: "Start" in footer_keys(app), "Start in the footer")
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the start question")
    assert query(db, "SELECT COUNT(*) FROM reviews")[0][0] == 1


async def test_a_followed_run_shows_its_pictures_sent_and_its_own_rate(
        tmp_path: Path, lock_holder: subprocess.Popen[bytes]) -> None:
    """Pictures sent are read from the store (the call tally), and the rate counts the run's
    units from the run's own start, not from when the app began to watch."""
    db = tmp_path / "run.db"
    with sqlite3.connect(db) as conn:  # as if the generator had seen each picture
        conn.execute("UPDATE llm_calls SET pictures = 1 WHERE stage = 'generate'")
        sent = conn.execute("SELECT COUNT(*) FROM llm_calls WHERE stage = 'generate' "
                            "AND status = 'ok'").fetchone()[0]
        # Started 360 s ago with nothing done: 72 units is 0.2 units/s at the first read.
        conn.execute("UPDATE runs SET status = 'running', finished_at = NULL, start_done = 0, "
                     "started_at = ?", (time.time() - 360,))
    conn.close()
    app = tui_app("--db", str(db))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.run_id is not None, "the followed run")
        await wait_for_redraw(pilot, app)
        assert app.following
        text = screen_text(app)
        assert f"{sent} pictures sent" in text, text
        assert f"{SAMPLE_UNITS}/{SAMPLE_UNITS} units · 0.2 units/s" in text, text


def test_run_without_headless_refuses_a_store_another_process_writes(
        tmp_path: Path, lock_holder: subprocess.Popen[bytes]) -> None:
    config = tmp_path / "run.toml"
    ctx, autostart = context_from_args(build_parser().parse_args(
        ["run", "--config", str(config)]))
    with pytest.raises(StoreError, match=f"pid {lock_holder.pid}"):
        VisinstructApp(ctx, autostart=autostart)


async def test_bare_visinstruct_says_at_once_which_store_it_created(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ctx, autostart = context_from_args(build_parser().parse_args([]))
    app = VisinstructApp(ctx, autostart=autostart)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        assert app.sub_title == "visinstruct.db (created now) · this window writes it"
        assert any(f"New store {tmp_path / 'visinstruct.db'}" in n.message
                   for n in app._notifications)
    again = VisinstructApp(context_from_args(build_parser().parse_args([]))[0])
    async with again.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        assert again.sub_title == "visinstruct.db · this window writes it"
        assert not again._notifications


async def test_the_start_dialog_says_which_units_are_made_again_after_vision_is_on(
        tmp_path: Path) -> None:
    from tests.integration.test_vision_turned_on import run_once
    from tests.integration.test_vision_turned_on import write_config as vision_config

    run_once(vision_config(tmp_path, generator_sees=False, judge_sees=False))
    app = tui_app("--config", str(vision_config(tmp_path, generator_sees=True,
                                                judge_sees=False)))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "Start" in footer_keys(app), "Start in the footer")
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the start question")
        await pilot.pause(0.2)
        assert "6 units will be generated again because the prompt version changed " \
               "(vision on)." in " ".join(screen_text(app).replace("█", " ").split())
