"""The root of the project's error hierarchy and the errors a source file raises.

They live here, below core, so `dataset/` never imports core; `core.errors` re-exports
them and adds the rest of the hierarchy.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes of the `visinstruct` command."""

    OK = 0
    FAILED = 1          # the work ran but something failed (e.g. validation of an export)
    BAD_INPUT = 2       # bad config, file or flag: nothing was done
    INTERRUPTED = 3     # stopped by SIGINT/SIGTERM; everything finished so far is committed
    BUDGET = 4          # stopped cleanly because [budget].max_usd was reached


class VisinstructError(Exception):
    """Base of every error we raise on purpose; `title` is short enough for a dialog."""

    title = "Error"
    exit_code = ExitCode.FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(VisinstructError):
    """A bad file, flag or value given by the user; exit code 2."""

    title = "Bad input"
    exit_code = ExitCode.BAD_INPUT


class DataError(InputError):
    """A source data file is malformed or inconsistent."""

    title = "Bad data file"


class DownloadError(VisinstructError):
    """A download failed or arrived incomplete: the work failed, the input was fine (exit 1)."""

    title = "Download failed"
