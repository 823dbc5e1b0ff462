"""The run monitor through Pilot: runs started in the app, pause and stop, errors, the SageMaker
fleet, and following a store that a headless run in another process writes."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.aws import aws_env
from tests.fakes.sagemaker_server import SageMakerServer
from tests.fakes.scripting import Reply, Script
from tests.tui.support_monitor import (
    SAMPLE_UNITS,
    SIZE,
    fleet_model,
    fleet_reply,
    make_app,
    press_start,
    run_pipeline,
    screen_text,
    store_figures,
    wait_for,
    wait_for_redraw,
    write_config,
)
from visinstruct.tui.widgets.endpoint_table import EndpointTable
from visinstruct.tui.widgets.error_feed import ErrorFeed
from visinstruct.tui.widgets.latest_samples import LatestSamples

REPO = Path(__file__).resolve().parents[2]
ENDED = ("finished", "interrupted", "failed", "budget")
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio


def cells(table: EndpointTable | ErrorFeed | LatestSamples) -> list[list[str]]:
    """Every row a table shows, as plain strings."""
    if isinstance(table, LatestSamples):
        return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]
    return table.rows


async def test_run_started_in_the_app_fills_every_part_of_the_monitor(tmp_path: Path) -> None:
    app = make_app(write_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await press_start(pilot, app)
        await wait_for(pilot, lambda: app.state.status in ENDED, "the run to end")
        await wait_for(pilot, lambda: all(s.question for s in app.state.samples),
                       "the samples' questions")
        await wait_for_redraw(pilot, app)
        figures = store_figures(tmp_path / "run.db")
        text = screen_text(app)

        assert app.state.status == "finished"
        assert f"{SAMPLE_UNITS}/{SAMPLE_UNITS} units" in text
        assert "100%" in text
        endpoint = cells(app.screen.query_one(EndpointTable))
        assert endpoint[0][0] == "scripted"
        assert endpoint[0][3] == str(figures["ok_calls"])  # done: every call answered
        assert endpoint[0][-1] == "healthy"
        assert f"{figures['kept']}/{figures['judged']}" in text  # the histogram's keep rate
        assert sum(app.state.score_buckets.values()) == figures["judged"]
        samples = cells(app.screen.query_one(LatestSamples))
        assert len(samples) == 20 and all(row[4] for row in samples)
        assert "no errors" in text and "idle" in text


async def test_pause_resume_and_stop_steer_the_run(tmp_path: Path) -> None:
    app = make_app(write_config(tmp_path, latency=0.08, max_in_flight=2))
    async with app.run_test(size=SIZE) as pilot:
        await press_start(pilot, app)
        await wait_for(pilot, lambda: app.state.done_units >= 4, "some units done")

        await pilot.press("space")
        assert app.state.status == "paused"
        await wait_for(pilot, lambda: not app.state.lanes, "calls in flight to finish")
        held = app.state.done_units
        await pilot.pause(0.3)  # paused: this window must pass with no unit finishing
        assert app.state.done_units == held
        await wait_for_redraw(pilot, app)
        text = screen_text(app)
        assert "paused" in text
        assert "ETA paused" in text and not re.search(r"ETA \d", text)  # no clock while held

        await pilot.press("space")
        assert app.state.status == "running"
        await wait_for(pilot, lambda: app.state.done_units > held, "work after resuming")

        await pilot.press("x")
        await wait_for(pilot, lambda: app.state.status in ENDED, "the run to stop")
        assert app.state.status == "interrupted"
        assert app.state.done_units < SAMPLE_UNITS
        await wait_for_redraw(pilot, app)
        assert "interrupted" in screen_text(app)
        stopped = app.state.done_units

        # Resumed, it says what is left of the whole, then how much was its own.
        await press_start(pilot, app)
        await wait_for(pilot, lambda: app.state.status == "running"
                       and app.state.start_done == stopped, "the resumed run")
        await wait_for_redraw(pilot, app)
        assert re.search(rf"\d+ left of {SAMPLE_UNITS} units", screen_text(app))
        await wait_for(pilot, lambda: app.state.status in ENDED, "the resumed run to end", 60)
        await wait_for_redraw(pilot, app)
        left = SAMPLE_UNITS - stopped
        assert f"{SAMPLE_UNITS}/{SAMPLE_UNITS} units ({left} this run)" in screen_text(app)
        assert any(f"Run finished: {left} units this run, {SAMPLE_UNITS}/{SAMPLE_UNITS} done"
                   in n.message for n in app._notifications)
    assert store_figures(tmp_path / "run.db")["status"] == "finished"


async def test_failed_calls_reach_the_error_feed_and_the_failed_count(tmp_path: Path) -> None:
    rules = [{"match": "^judge:", "error": "permanent", "times": 3}]
    app = make_app(write_config(tmp_path, rules=rules, max_in_flight=1))
    async with app.run_test(size=SIZE) as pilot:
        await press_start(pilot, app)
        await wait_for(pilot, lambda: app.state.status in ENDED, "the run to end")
        await wait_for_redraw(pilot, app)
        errors = cells(app.screen.query_one(ErrorFeed))
        endpoint = cells(app.screen.query_one(EndpointTable))
        text = screen_text(app)

    assert len(errors) == 3
    assert {row[0] for row in errors} == {"judge"}
    assert {row[2] for row in errors} == {"scripted"}  # the endpoint comes from the call's lane
    assert {row[3] for row in errors} == {"ScriptedPermanent: scripted permanent error"}
    assert endpoint[0][4] == "3"
    assert "3 failed" in text


async def test_sample_enter_opens_it_in_review(tmp_path: Path) -> None:
    app = make_app(write_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await press_start(pilot, app)
        await wait_for(pilot, lambda: app.state.status in ENDED, "the run to end")
        await wait_for_redraw(pilot, app)
        asked: list[tuple[int, str | None]] = []
        open_review = app.open_review

        async def recording(image_id: int, task: str | None = None) -> None:
            asked.append((image_id, task))
            await open_review(image_id, task)

        app.open_review = recording  # type: ignore[method-assign]
        samples = app.screen.query_one(LatestSamples)
        samples.focus()
        await pilot.press("down")
        await pilot.pause()
        # The sample on the highlighted row (the list may have been redrawn since the run ended).
        row_key = samples.coordinate_to_cell_key(samples.cursor_coordinate).row_key
        chosen = samples._samples[str(row_key.value)]
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.current_mode == "review", "the review screen")
        assert samples.cursor_coordinate.row == 1
        assert asked == [(chosen.image_id, chosen.task)]


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch) -> Iterator[SageMakerServer]:
    """Two SageMaker endpoints, a and b, answering like Mixtral after a short delay."""
    with SageMakerServer(Script(Reply(fleet_reply, latency_s=0.005)),
                         endpoints=("a", "b")) as server:
        aws_env(monkeypatch, sagemaker_url=server.url)
        yield server


async def test_run_on_the_fake_sagemaker_fleet_shows_per_endpoint_figures(
        tmp_path: Path, fleet: SageMakerServer) -> None:
    app = make_app(write_config(tmp_path, model=fleet_model(("a", "b"))))
    async with app.run_test(size=SIZE) as pilot:
        await press_start(pilot, app)
        await wait_for(pilot, lambda: app.state.status in ENDED, "the fleet run to end", 60)
        await wait_for_redraw(pilot, app)
        rows = {row[0]: row for row in cells(app.screen.query_one(EndpointTable))}
        text = screen_text(app)

    assert app.state.status == "finished"
    assert f"{SAMPLE_UNITS}/{SAMPLE_UNITS} units" in text
    assert set(rows) == {"a", "b"}
    served = {name: fleet.script.count(name) for name in ("a", "b")}
    for name, row in rows.items():
        done = int(row[3].replace(",", ""))
        assert done == served[name] > 0          # every request the endpoint answered
        assert row[2].endswith("/4")             # in flight of the pool's current limit
        assert row[6].endswith("ms") and row[6] != "–"   # p50 latency measured
        assert row[8] != "–"                      # tokens per second
        assert row[9] == "healthy"


async def test_attach_follows_a_headless_run_in_another_process_to_the_end(
        tmp_path: Path) -> None:
    config = write_config(tmp_path, latency=0.04, max_in_flight=2)
    db = tmp_path / "run.db"
    headless = subprocess.Popen(
        [sys.executable, "-m", "visinstruct.core.cli", "run", "--headless", "--json",
         "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    try:
        await _follow(config, db, headless)
    finally:
        if headless.poll() is None:
            headless.kill()
        headless.wait(timeout=30)
    assert headless.returncode == 0, headless.stderr.read().decode() if headless.stderr else ""


async def _follow(config: Path, db: Path, headless: subprocess.Popen[bytes]) -> None:
    # The headless run creates the store; attach once its run row exists.
    import sqlite3
    import time

    deadline = time.monotonic() + 30
    while True:
        assert headless.poll() is None or db.exists(), "the headless run ended without a store"
        try:
            with sqlite3.connect(db) as conn:
                if conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]:
                    break
        except sqlite3.Error:
            pass
        assert time.monotonic() < deadline, "the headless run never started"
        time.sleep(0.05)

    app = make_app(config)
    seen: set[int] = set()
    headers: set[str] = set()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.run_id is not None, "the followed run")
        await wait_for_redraw(pilot, app)
        following = screen_text(app)
        headers.add(str(app.sub_title))

        def ended() -> bool:
            seen.add(app.state.done_units)
            headers.add(str(app.sub_title))
            return app.state.status == "finished" and app.state.done_units == SAMPLE_UNITS \
                and app.ownership.owned

        await wait_for(pilot, ended, "the followed run to finish", 60)
        await wait_for_redraw(pilot, app)
        await wait_for(pilot, lambda: "Start" in screen_text(app).splitlines()[-1],
                       "Start in the footer once the store is this window's")
        text = screen_text(app)
        figures = store_figures(db)
        assert not app.following  # its writer is gone: the store is this window's now
    assert any(0 < done < SAMPLE_UNITS for done in seen), f"never saw it part-way: {seen}"
    # The header names the live headless process while it runs, and nothing else ever.
    assert f"following run 1 of pid {headless.pid}" in following
    assert "Start" not in following.splitlines()[-1] and "Pause" not in following
    assert headers <= {f"run.db · following run 1 of pid {headless.pid}",
                       "run.db · this window writes it"}, headers
    assert f"{SAMPLE_UNITS}/{SAMPLE_UNITS} units ·" in text  # no "this run": it was not ours
    assert f"{figures['kept']}/{figures['judged']}" in text
    assert app.state.judged_pairs == figures["judged"]


async def test_opening_a_finished_store_writes_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    db = run_pipeline(config)
    before = store_figures(db)
    app = make_app(config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status == "finished", "the store's run")
        await wait_for_redraw(pilot, app)
        assert f"{SAMPLE_UNITS}/{SAMPLE_UNITS} units" in screen_text(app)
    assert store_figures(db) == before


def test_store_reader_counts_only_new_rows_yet_matches_a_fresh_read(tmp_path: Path) -> None:
    from visinstruct.core.config import load_config
    from visinstruct.core.store.database import Store
    from visinstruct.core.store.snapshots import StoreReader, take_snapshot

    limited = write_config(tmp_path)
    limited.write_text(limited.read_text().replace("[source]\n", "[source]\nlimit = 10\n"))
    db = run_pipeline(limited)
    whole = write_config(tmp_path)  # the same store, every image this time
    config = load_config(whole)
    with Store(db) as store:
        reader = StoreReader(store, config)
        before = reader.snapshot(with_cost=False)
        assert before.progress.done_units == 30 and before.full_scores
        run_pipeline(whole)
        after = reader.snapshot(with_cost=False)
        fresh = take_snapshot(store, config, with_cost=False)
    assert after.full_scores and after.scores == fresh.scores
    assert after.progress == fresh.progress
    assert after.progress.done_units == SAMPLE_UNITS and after.progress.run_id == 2
    assert after.endpoints == fresh.endpoints
    assert before.scores.judged < after.scores.judged


def test_event_buffer_wakes_the_ui_once_per_burst() -> None:
    import threading

    from visinstruct.core.events import ImageDone
    from visinstruct.tui.messages import EventBuffer

    wakes: list[int] = []
    buffer = EventBuffer(wake=lambda: wakes.append(len(wakes)))
    emitters = [threading.Thread(target=lambda: [buffer.emit(ImageDone(i, "detail", True, i, 9))
                                                 for i in range(1000)]) for _ in range(4)]
    for thread in emitters:
        thread.start()
    for thread in emitters:
        thread.join()
    assert 1 <= len(wakes) <= 4  # at most one racing wake per thread, never one per event
    buffer.disarm()
    assert len(buffer.drain_events()) == 4000
    woken = len(wakes)
    buffer.emit(ImageDone(1, "detail", True, 1, 9))
    buffer.emit(ImageDone(2, "detail", True, 2, 9))
    assert len(wakes) == woken + 1  # the first event after a drain wakes it again, once
