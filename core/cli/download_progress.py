"""The download progress of `prepare --download`: one Rich bar per file on stderr."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from visinstruct.dataset.download import ProgressCallback


@contextlib.contextmanager
def rich_progress() -> Iterator[ProgressCallback]:
    """Yield a progress callback that draws one Rich bar per file on stderr."""
    # Imported here so importing the commands never pulls in Rich's live display.
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    task_ids: dict[str, TaskID] = {}

    def show(name: str, done_bytes: int, total_bytes: int | None) -> None:
        if name not in task_ids:
            task_ids[name] = bars.add_task(name, total=total_bytes)
        bars.update(task_ids[name], completed=done_bytes, total=total_bytes)

    with bars:
        yield show
