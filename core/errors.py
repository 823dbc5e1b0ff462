"""The project's own error hierarchy; SDK errors are translated at the backend boundary."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, Literal

from visinstruct.dataset.errors import (
    DataError,
    DownloadError,
    ExitCode,
    InputError,
    VisinstructError,
)

# How the pool treats a failed call (BackendError.kind).
ErrorKind = Literal["backpressure", "transient", "permanent"]

__all__ = ["BackendError", "BudgetExceeded", "ConfigError", "DataError", "DeployError",
           "DownloadError", "ErrorKind", "ExitCode", "ExportError", "InputError", "StoreError",
           "VisinstructError", "interruptible", "note_sigterm", "sigterm_as_interrupt"]


class ConfigError(InputError):
    """The run configuration is invalid."""

    title = "Bad configuration"


class StoreError(InputError):
    """The SQLite store cannot be used (wrong project, newer schema, unwritable)."""

    title = "Store problem"


class ExportError(VisinstructError):
    """An export could not be written or a record failed validation."""

    title = "Export failed"
    exit_code = ExitCode.BAD_INPUT


class BackendError(VisinstructError):
    """A model call failed; `kind` says how the pool should treat it."""

    title = "Model call failed"

    BACKPRESSURE: ErrorKind = "backpressure"  # slow down: throttled or overloaded
    TRANSIENT: ErrorKind = "transient"        # try again: timeouts, 5xx, dropped connections
    PERMANENT: ErrorKind = "permanent"        # do not retry: bad request, access, validation

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind = "permanent",
        error_class: str = "",
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.error_class = error_class or type(self).__name__
        self.status = status


class BudgetExceeded(VisinstructError):
    """The run reached [budget].max_usd."""

    title = "Budget reached"
    exit_code = ExitCode.BUDGET


class DeployError(VisinstructError):
    """Creating, waiting for or deleting a SageMaker endpoint failed."""

    title = "Deploy failed"


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def sigterm_as_interrupt() -> Any:
    """From now on SIGTERM raises KeyboardInterrupt (Ctrl-C's exit 3); the previous handler."""
    return signal.signal(signal.SIGTERM, _interrupt)


_sigterm_noted = threading.Event()


def _note(_signum: int, _frame: object) -> None:
    _sigterm_noted.set()


def note_sigterm() -> Any:
    """From now on a SIGTERM is only noted, not raised; the previous handler. While the
    commands are imported an exception could land inside another library's import, and some
    swallow it or die of it: `interruptible` asks the note once they are loaded."""
    return signal.signal(signal.SIGTERM, _note)


def interruptible(load: Callable[[], Callable[[], int]], *, ends_process: bool = False) -> int:
    """Run the command `load()` returns, SIGTERM stopping it as Ctrl-C does (exit 3) from the
    very start: while the commands are imported too (a second), not only once one runs.

    The process entry points call it before importing the commands, which is most of the
    time a short command takes: a SIGTERM then used to kill the process (exit 143). With
    `ends_process` (the process exits right after) a SIGTERM once the command is over is
    ignored: its work is done, and Python, which resets its own handlers as it finalizes (a
    second or more after an hf export), would turn the exit code into 143.
    """
    main_thread = threading.current_thread() is threading.main_thread()
    previous = note_sigterm() if main_thread else None
    try:
        command = load()
        if _sigterm_noted.is_set():
            raise KeyboardInterrupt
        if main_thread:
            sigterm_as_interrupt()
        return command()
    except KeyboardInterrupt:
        print("visinstruct: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    finally:
        _sigterm_noted.clear()
        if main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_IGN if ends_process else previous)
