"""The Textual app: modes for each screen, runs in a thread worker, attach mode, errors as dialogs."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState
from visinstruct.core.cli.options import config_from_args
from visinstruct.core.config import Config
from visinstruct.core.errors import InputError, VisinstructError
from visinstruct.core.text.redact import redact
from visinstruct.core.store.database import Store
from visinstruct.tui.context import AppContext
from visinstruct.tui.messages import EventsArrived
from visinstruct.tui.screens.dialogs import ConfirmDialog, ErrorDialog
from visinstruct.tui.screens.evaluation import EvaluationScreen
from visinstruct.tui.screens.help import HelpScreen, KeySection, key_rows
from visinstruct.tui.screens.monitor import MonitorScreen
from visinstruct.tui.screens.prompt_lab import PromptLabScreen
from visinstruct.tui.screens.review import ReviewScreen
from visinstruct.tui.runs import RunControl

T = TypeVar("T")

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
        Binding("question_mark", "help", "Keys", key_display="?",
                tooltip="Show every key (this list)"),
        Binding("q", "request_quit", "Quit", tooltip="Quit (asks first while a run is going)"),
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
        self.store = Store(ctx.db_path)
        self.runs = RunControl(self)
        self.state = self.runs.state      # what every screen draws the run from
        self.buffer = self.runs.buffer    # where pipeline events land (from any thread)

    # -- start and stop --------------------------------------------------------------------------
    def on_mount(self) -> None:
        self.runs.begin(frozen=self.frozen, autostart=self.autostart)

    def on_unmount(self) -> None:
        self.runs.end()

    @property
    def run_active(self) -> bool:
        """A run started in this app is going (including pausing and stopping)."""
        return self.runs.active

    @property
    def following(self) -> bool:
        """The monitor is following the store (attach mode, no run of ours going)."""
        return self.runs.following

    def start_run(self) -> None:
        """Start (or resume) a run of ctx.config on the store in a thread worker."""
        self.runs.start()

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

    # -- quitting --------------------------------------------------------------------------------
    async def action_quit(self) -> None:
        await self.action_request_quit()

    async def action_request_quit(self) -> None:
        """Quit; while a run is going, ask first and stop it cleanly."""
        if not self.run_active:
            self.exit(0)
            return
        if isinstance(self.screen, ConfirmDialog):
            return

        def answered(stop: bool | None) -> None:
            if stop:
                self.run_worker(self._stop_then_exit(), group="quit", exit_on_error=False)

        self.push_screen(ConfirmDialog(
            "Quit while a run is going?",
            "The run stops taking new work and calls in flight finish; everything done so "
            "far is kept, and the next run resumes where this one stopped.",
            yes="Stop and quit", no="Keep running"), answered)

    async def _stop_then_exit(self) -> None:
        worker = self.runs.run_worker
        if worker is not None and not worker.is_finished:
            self.stop_run()
            try:
                await worker.wait()
            except Exception:  # noqa: BLE001 - its failure was already shown; quit anyway
                pass
        self.exit(0)

    # -- the command palette ---------------------------------------------------------------------
    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Every action: screens, runs, help and quit, then each screen's own keys."""
        for mode, _screen, title in SCREENS:
            yield SystemCommand(f"Go to {title}", f"Switch to the {title.lower()} screen",
                                partial(self.run_action, f"show_mode('{mode}')"))
        yield SystemCommand("Start run", f"Generate and judge with {self.ctx.config.origin}",
                            self.start_run)
        yield SystemCommand("Pause or resume run", "Hold new work; calls in flight finish",
                            self.pause_run)
        yield SystemCommand("Stop run", "Stop taking new work; resume later with Start",
                            self.stop_run)
        yield SystemCommand("Keys", "Show every key of every screen", self.action_help)
        yield SystemCommand("Quit", "Quit (asks first while a run is going)",
                            partial(self.run_action, "request_quit"))
        for mode, screen_type, title in SCREENS:
            for binding in Binding.make_bindings(screen_type.BINDINGS):
                if not binding.description or binding.action.startswith("app."):
                    continue
                yield SystemCommand(f"{title}: {binding.description}",
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
    config: Config = config_from_args(args, {"source.limit": getattr(args, "limit", None)})
    autostart = getattr(args, "command", "tui") == "run"
    attach = db is not None and not autostart
    if attach and not Path(db).is_file():
        raise InputError(f"{db}: no such store to follow; start a run first or check --db")
    return AppContext(config=config, db_path=Path(config.db), config_path=config_path,
                      attach=attach), autostart


def main(args: argparse.Namespace) -> int:
    """`visinstruct` / `visinstruct tui` / `visinstruct run` without --headless."""
    ctx, autostart = context_from_args(args)
    app = VisinstructApp(ctx, autostart=autostart)
    app.run()
    return int(app.return_code or 0)
