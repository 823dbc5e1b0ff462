"""The app on a store it cannot write: it shows what the store holds and refuses to start a run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tui.support_monitor import (
    SIZE,
    make_app,
    run_pipeline,
    store_figures,
    wait_for,
    write_config,
)
from visinstruct.core.store import opening

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio


async def test_a_read_only_store_is_browsed_but_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path)
    db = run_pipeline(config)
    before = db.read_bytes()
    real_access = os.access
    # Tests run as root, where permission bits do not bind: the store reports itself unwritable.
    monkeypatch.setattr(opening.os, "access", lambda path, mode, **kw: (
        False if str(path) == str(db) and mode & os.W_OK else real_access(path, mode, **kw)))
    app = make_app(config)
    assert app.store.readonly
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status == "finished", "the store's last run")
        assert app.state.judged_pairs == store_figures(db)["judged"]
        assert app.sub_title == "run.db · read-only file: browse only"
        await pilot.press("s")
        await pilot.pause()
        assert not app.run_active
        assert any("read-only" in n.message for n in app._notifications)
    assert db.read_bytes() == before
