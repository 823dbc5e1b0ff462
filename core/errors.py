"""The project's own error hierarchy; SDK errors are translated at the backend boundary."""

from __future__ import annotations

from typing import Literal

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
           "VisinstructError"]


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
