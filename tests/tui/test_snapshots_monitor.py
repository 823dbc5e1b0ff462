"""Snapshot tests of the monitor and help screens at 80x24 and 120x40, on a frozen store.

The store comes from a real pipeline run (one worker, so its order is fixed) whose clock
columns are then set to fixed values; the app reads it once and runs no timers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.tui.support_monitor import (
    freeze_times,
    make_app,
    run_pipeline,
    wait_for_redraw,
    write_config,
)
from visinstruct.tui.app import VisinstructApp

SIZES = [(80, 24), (120, 40)]
FROZEN_NOW = 1020.0


@pytest.fixture
def frozen_app(tmp_path: Path) -> VisinstructApp:
    config = write_config(tmp_path, max_in_flight=1)
    freeze_times(run_pipeline(config))
    return make_app(config, frozen=True, clock=lambda: FROZEN_NOW)


def settled(app: VisinstructApp) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_for_redraw(pilot, app)
    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_monitor_screen(snap_compare: Any, frozen_app: VisinstructApp,
                        size: tuple[int, int]) -> None:
    assert snap_compare(frozen_app, terminal_size=size, run_before=settled(frozen_app))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help_screen(snap_compare: Any, frozen_app: VisinstructApp,
                     size: tuple[int, int]) -> None:
    assert snap_compare(frozen_app, press=["question_mark"], terminal_size=size,
                        run_before=settled(frozen_app))
