"""The Textual app: modes for each screen, runs in a thread worker, following another
process's run, errors as dialogs."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Input, TextArea
from textual.worker import Worker, WorkerState

from visinstruct.core.cli.options import overrides_from_args, run_config_from_args
from visinstruct.core.config import Config
from visinstruct.core.errors import ExitCode, InputError, VisinstructError
from visinstruct.core.sanitize.redact import redact
from visinstruct.core.store.database import Store
from visinstruct.tui.context import AppContext
from visinstruct.tui.messages import EventsArrived
from visinstruct.tui.ownership import StoreOwnership, owner_line, writer_name
from visinstruct.tui.runs import RunControl
from visinstruct.tui.screens.dialogs import ConfirmDialog, ErrorDialog
from visinstruct.tui.screens.evaluation import EvaluationScreen
from visinstruct.tui.screens.help import HelpScreen, KeySection, key_rows
from visinstruct.tui.screens.monitor import MonitorScreen
from visinstruct.tui.screens.prompt_lab import PromptLabScreen
from visinstruct.tui.screens.review import ReviewScreen
from visinstruct.tui.settings import load_settings, save_setting

T = TypeVar("T")
RUN_ACTIONS = ("start_run", "pause_run", "stop_run")
SCREEN_KEYS = [
    Binding("f2", "show_mode('monitor')", "Monitor", show=False, priority=True,
            tooltip="Run monitor (the home screen)"),
    Binding("f3", "show_mode('review')", "Review", show=False, priority=True,
            tooltip="Review the generated pairs"),
    Binding("f4", "show_mode('lab')", "Lab", show=False, priority=True,
            tooltip="Prompt lab: try prompts on samples"),
    Binding("f5", "show_mode('evaluation')", "Eval", show=False, priority=True,
            tooltip="Evaluation: ours against the GPT-4 baseline"),
]

# (mode, screen class, title shown in help and the palette)
SCREENS: tuple[tuple[str, type[Screen[Any]], str], ...] = (
    ("monitor", MonitorScreen, "Run monitor"),
    ("review", ReviewScreen, "Review"),
    ("lab", PromptLabScreen, "Prompt lab"),
    ("evaluation", EvaluationScreen, "Evaluation"),
)


class VisinstructApp(App[int]):
    """Watches and steers runs; every screen reaches the context, store and run state from here."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    TITLE = "visinstruct"
    DEFAULT_MODE = "monitor"
    MODES = {mode: screen for mode, screen, _title in SCREENS}
    BINDINGS = [
        Binding("m", "show_mode('monitor')", "Monitor", tooltip="Run monitor (the home screen)"),
        Binding("r", "show_mode('review')", "Review", tooltip="Review the generated pairs"),
        Binding("p", "show_mode('lab')", "Lab", tooltip="Prompt lab: try prompts on samples"),
        Binding("e", "show_mode('evaluation')", "Eval",
                tooltip="Evaluation: ours against the GPT-4 baseline"),
        # Keys typing cannot produce: they switch screens even from inside an editor.
        *SCREEN_KEYS,
        Binding("escape", "leave_editor", "Leave editor", show=False,
                tooltip="Leave the text box or editor (then screen keys work again)"),
        Binding("question_mark", "help", "Keys", key_display="?",
                tooltip="Show every key (this list)"),
        Binding("q", "request_quit", "Quit", tooltip="Quit (asks first while a run is going)"),
        Binding("ctrl+q", "request_quit", "Quit", show=False, priority=True,
                tooltip="Quit (asks first while a run is going)"),
    ]

    def __init__(self, ctx: AppContext, *, autostart: bool = False,
                 clock: Callable[[], float] = time.time, frozen: bool = False) -> None:
        """`clock` gives wall-clock seconds; `frozen` reads the store once and starts no timers.

        A frozen app (for snapshot tests and screenshots) shows exactly what the store holds.
        """
        super().__init__()
        self.ctx = ctx
        self.clock = clock
        self.frozen = frozen
        self.autostart = autostart
        # The app owns its store (holds the writer lock) unless another live process writes
        # it; then it follows that process's run. A frozen app only shows what is there.
        self.ownership = StoreOwnership(ctx.db_path)
        if not frozen and not self.ownership.claim() and autostart:
            raise self.ownership.refusal()
        try:
            self.store = Store(ctx.db_path)
        except BaseException:
            self.ownership.release()
            raise
        self.runs = RunControl(self)
        self.state = self.runs.state      # what every screen draws the run from
        self.buffer = self.runs.buffer    # where pipeline events land (from any thread)

    # -- start and stop --------------------------------------------------------------------------
    def on_mount(self) -> None:
        theme = load_settings().get("theme")
        if not self.frozen and isinstance(theme, str) and theme in self.available_themes:
            self.theme = theme
        if not self.frozen:  # snapshots keep the default theme whatever a user chose
            self.watch(self, "theme", self._theme_chosen, init=False)
        self.show_owner()
        if self.store.created and not self.frozen:  # say so at once, not after quitting
            self.notify(f"New store {self.ctx.db_path.resolve()} (created now; pass --db to "
                        "use another).")
        self.runs.begin(frozen=self.frozen, autostart=self.autostart)

    def _theme_chosen(self, theme: str) -> None:
        save_setting("theme", theme)

    def on_unmount(self) -> None:
        self.runs.end()
        self.ownership.release()

    @property
    def run_active(self) -> bool:
        """A run started in this app is going (including pausing and stopping)."""
        return self.runs.active

    @property
    def following(self) -> bool:
        """The monitor is following the store (another process writes it)."""
        return self.runs.following

    @property
    def attached(self) -> bool:
        """Another live process writes the store: its run is steered there, not here."""
        return not self.ownership.owned and self.ownership.writer_pid is not None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """While another process writes the store, run controls are hidden and do nothing."""
        if action in RUN_ACTIONS and self.attached:
            return False  # hidden from the footer, and the key does nothing
        return True

    # s, space and x while following: their bindings are off, so the key lands here; say why
    # rather than do nothing in silence.
    def key_s(self) -> None:
        self._steer_elsewhere()

    def key_space(self) -> None:
        self._steer_elsewhere()

    def key_x(self) -> None:
        self._steer_elsewhere()

    def _steer_elsewhere(self) -> None:
        if self.attached and isinstance(self.screen, MonitorScreen):
            self.notify(f"{writer_name(self.ownership.writer_pid)} is writing this store: "
                        "start, pause and stop its run there.", severity="warning")

    def show_owner(self) -> None:
        """The header says whose store this is: this window's, or which live process writes it."""
        self.sub_title = "" if self.frozen else owner_line(
            self.ctx.db_path, self.ownership, self.store, self.state.run_id)
        self.refresh_bindings()

    def start_run(self) -> None:
        """Show what a run would do (config, models, units left, calls, cost) and start it on
        yes."""
        if self.attached:
            self.notify(f"{writer_name(self.ownership.writer_pid)} is writing this store: "
                        "start, pause and stop its run there.", severity="warning")
            return
        if self.run_active:
            self.notify("A run is already going.", severity="warning")
            return
        if self.store.readonly:
            self.notify(f"{self.ctx.db_path} is read-only: it can be browsed but not run.",
                        severity="error")
            return
        self.run_worker(self._plan_then_ask, thread=True, group="plan", exit_on_error=False)

    def _plan_then_ask(self) -> None:
        """Thread worker: the config to run (the store's last unless one was chosen) and its
        plan."""
        from visinstruct.core.pipeline.plan import plan_run
        from visinstruct.core.store.run_config import config_for_store

        config = self.ctx.config
        if not self.ctx.chosen:  # read now: a run since the app opened may have recorded one
            config = config_for_store(self.store, config, self.ctx.overrides)
        plan = plan_run(config, self.store)
        self.call_from_thread(self._ask_to_start, config, plan)

    def _ask_to_start(self, config: Config, plan: Any) -> None:
        def answered(start: bool | None) -> None:
            if start:
                self.runs.start(config)

        self.push_screen(ConfirmDialog("Start this run?", plan.describe(), yes="Start",
                                       no="Cancel", danger=False), answered)

    def pause_run(self) -> None:
        """Pause a running run (calls in flight finish) or resume a paused one."""
        self.runs.pause()

    def stop_run(self) -> None:
        """Stop taking new work; calls in flight finish and the rest is done on the next run."""
        self.runs.stop()

    def action_start_run(self) -> None:
        self.start_run()

    def action_pause_run(self) -> None:
        self.pause_run()

    def action_stop_run(self) -> None:
        self.stop_run()

    async def read_store(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store read `fn(*args)` off the event loop and return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, partial(fn, *args))

    # -- messages and workers --------------------------------------------------------------------
    def on_events_arrived(self, _message: EventsArrived) -> None:
        self.runs.events_arrived()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if self.runs.worker_changed(event):
            return
        if event.state == WorkerState.ERROR:
            self.report_error(event.worker.error)

    def report_error(self, error: BaseException | None) -> None:
        """Show any exception as a dialog titled by its kind, never as a traceback."""
        if isinstance(error, VisinstructError):
            self.show_error(error.title, str(error))
        elif error is not None:
            self.show_error("Unexpected error", f"{type(error).__name__}: {error}")

    def show_error(self, title: str, message: str) -> None:
        """A modal dialog with a short title and the message (redacted, like every message)."""
        self.push_screen(ErrorDialog(title, redact(message)))

    # -- navigation ------------------------------------------------------------------------------
    async def action_show_mode(self, mode: str) -> None:
        """Switch to a screen (closing dialogs such as help first)."""
        while len(self.screen_stack) > 1 and isinstance(self.screen, (HelpScreen,)):
            self.pop_screen()
        await self.switch_mode(mode)

    async def open_review(self, image_id: int, task: str | None = None) -> None:
        """Switch to review and show one image's conversation."""
        await self.switch_mode("review")
        screen = self.screen
        if isinstance(screen, ReviewScreen):
            screen.show_sample(image_id, task)

    def help_sections(self) -> list[KeySection]:
        """Every key: the app's, then each screen's, as (title, [(keys, description)])."""
        display = self.get_key_display
        sections: list[KeySection] = [("Everywhere", [
            *key_rows(self.BINDINGS, display),
            (display(Binding(self.COMMAND_PALETTE_BINDING, "")), "Command palette (every action)"),
        ])]
        for _mode, screen_type, title in SCREENS:
            rows = key_rows(screen_type.BINDINGS, display)
            if rows:
                sections.append((title, rows))
        return sections

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
            return
        self.push_screen(HelpScreen(self.help_sections()))

    def action_leave_editor(self) -> None:
        """Escape from a text box or editor: nothing focused, so screen keys work again."""
        if isinstance(self.focused, (Input, TextArea)):
            self.screen.set_focus(None)

    # -- quitting --------------------------------------------------------------------------------
    async def action_quit(self) -> None:
        await self.action_request_quit()

    async def action_request_quit(self) -> None:
        """Quit; while a run is going, ask first and stop it cleanly; asked again, quit at once."""
        if not self.run_active:
            self.exit(0)
            return
        if self.runs.stopping:
            # Calls in flight are left in the ledger as in flight: the next run sends them again.
            self.exit(return_code=int(ExitCode.INTERRUPTED))
            return
        if isinstance(self.screen, ConfirmDialog):
            return

        def answered(stop: bool | None) -> None:
            if stop:
                self.run_worker(self._stop_then_exit(), group="quit", exit_on_error=False)

        self.push_screen(ConfirmDialog(
            "Quit while a run is going?",
            "The run stops taking new work and calls in flight finish; everything done so "
            "far is kept, and the next run resumes where this one stopped. Quit again while "
            "it stops to leave at once (calls in flight are sent again on resume).",
            yes="Stop and quit", no="Keep running"), answered)

    async def _stop_then_exit(self) -> None:
        worker = self.runs.run_worker
        if worker is not None and not worker.is_finished:
            self.stop_run()
            try:
                await worker.wait()
            except Exception:  # noqa: BLE001 - its failure was already shown; quit anyway
                pass
        self.exit(return_code=int(ExitCode.INTERRUPTED))  # as a headless run stopped by Ctrl-C

    # -- the command palette ---------------------------------------------------------------------
    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Every action: screens, runs, help and quit, then each screen's own keys."""
        for mode, _screen, title in SCREENS:
            yield SystemCommand(f"Go to {title}", f"Switch to the {title.lower()} screen",
                                partial(self.run_action, f"show_mode('{mode}')"))
        if not self.attached:  # another process's run is steered where it runs
            yield SystemCommand("Start run", "Shows what will run and asks first",
                                self.start_run)
            yield SystemCommand("Pause or resume run", "Hold new work; calls in flight finish",
                                self.pause_run)
            yield SystemCommand("Stop run", "Stop taking new work; resume later with Start",
                                self.stop_run)
        yield SystemCommand("Keys", "Show every key of every screen", self.action_help)
        yield SystemCommand("Quit", "Quit (asks first while a run is going)",
                            partial(self.run_action, "request_quit"))
        listed: set[str] = set()
        for mode, screen_type, title in SCREENS:
            for binding in Binding.make_bindings(screen_type.BINDINGS):
                name = f"{title}: {binding.description}"
                if not binding.description or binding.action.startswith("app.") or name in listed:
                    continue
                listed.add(name)
                yield SystemCommand(name,
                                    f"key {self.get_key_display(binding)}",
                                    partial(self._screen_action, mode, binding.action))
        for command in super().get_system_commands(screen):
            if command.title not in ("Quit", "Keys"):  # ours ask first / list every screen
                yield command

    async def _screen_action(self, mode: str, action: str) -> None:
        await self.switch_mode(mode)
        await self.run_action(action, self.screen)


def context_from_args(args: argparse.Namespace) -> tuple[AppContext, bool]:
    """The app's context and whether to start a run at once, from `tui` or `run` arguments."""
    db: Path | None = getattr(args, "db", None)
    config_path: Path | None = getattr(args, "config", None)
    extra = {"source.limit": getattr(args, "limit", None)}
    autostart = getattr(args, "command", "tui") == "run"
    if db is not None and not autostart and not Path(db).is_file():
        # `tui --db` opens a store that exists: a typo must not make a new, empty one.
        raise InputError(f"{db}: no such store; make one with `visinstruct prepare --db {db}` "
                         "or `visinstruct run`, or check --db")
    # Without --config: the config the store was last run or prepared with, --set on top.
    config: Config = run_config_from_args(args, extra)
    return AppContext(config=config, db_path=Path(config.db), config_path=config_path,
                      chosen=config_path is not None,
                      overrides=overrides_from_args(args, extra)), autostart


def main(args: argparse.Namespace) -> int:
    """`visinstruct` / `visinstruct tui` / `visinstruct run` without --headless."""
    ctx, autostart = context_from_args(args)
    app = VisinstructApp(ctx, autostart=autostart)
    app.run()
    code = int(app.return_code or 0)
    if app.runs.active:
        # Quit while calls were in flight: their thread never ends by itself. Everything done is
        # committed; the ledger's in-flight rows are sent again on the next run.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
