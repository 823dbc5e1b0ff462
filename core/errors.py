"""The project's own error hierarchy; SDK errors are translated at the backend boundary."""

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


class ConfigError(InputError):
    """The run configuration is invalid."""

    title = "Bad configuration"


class DataError(InputError):
    """A source data file is malformed or inconsistent."""

    title = "Bad data file"


class StoreError(InputError):
    """The SQLite store cannot be used (wrong project, newer schema, unwritable)."""

    title = "Store problem"


class ExportError(VisinstructError):
    """An export could not be written or a record failed validation."""

    title = "Export failed"
    exit_code = ExitCode.BAD_INPUT


class DownloadError(VisinstructError):
    """A download failed or arrived incomplete: the work failed, the input was fine (exit 1)."""

    title = "Download failed"


class BackendError(VisinstructError):
    """A model call failed; `kind` says how the pool should treat it."""

    title = "Model call failed"

    BACKPRESSURE = "backpressure"
    TRANSIENT = "transient"
    PERMANENT = "permanent"

    def __init__(
        self,
        message: str,
        *,
        kind: str = "permanent",
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
