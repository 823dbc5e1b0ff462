"""The `visinstruct` command: the one module above both the core commands and the app.

Core never imports the app (the import contracts say so); the commands that open it (`tui`,
bare `visinstruct`, `run` without --headless) get it from here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from visinstruct.core.errors import InputError, interruptible


def open_app(args: argparse.Namespace) -> int:
    """Start the Textual app with the command's arguments; its exit code."""
    try:
        from visinstruct.tui.app import main as app_main
    except ImportError as exc:  # a broken install (Textual missing): one line, exit 2
        raise InputError(f"the app cannot start: {exc}") from exc
    return app_main(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of `python -m visinstruct`.

    The commands are imported once SIGTERM already means "interrupted" (exit 3). Without
    `argv` the command is the process's own, and the process ends with it.
    """
    def command() -> Callable[[], int]:
        from visinstruct.core.cli.main import main as run_command

        return lambda: run_command(argv, open_app=open_app)

    return interruptible(command, ends_process=argv is None)
