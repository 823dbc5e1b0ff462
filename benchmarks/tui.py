"""TUI responsiveness: pipeline events absorbed per second while a key is answered in 100 ms,
and the time to open the review list, on a synthetic store of 100K images.

Drives the real app headless (`run_test`) at 120x40. A producer thread feeds synthetic events
(calls started and finished, pairs judged, units done, endpoint health, cost, some errors)
into the app's event buffer at rising rates; every 100 ms a key is posted whose action changes
the header, and the time until the screen has been refreshed with it is the key latency.
Targets: at least 2,000 events/s absorbed; review opens in under 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import events
from textual.binding import Binding
from textual.widgets import DataTable, Label

from visinstruct.core.config import Config, GenerationConfig, JudgeConfig, ModelConfig
from visinstruct.core.events import (
    CallFinished,
    CallStarted,
    CostUpdated,
    EndpointHealth,
    Event,
    ImageDone,
    PairsJudged,
    RunStarted,
)
from visinstruct.core.store.database import Store
from visinstruct.tui.app import VisinstructApp
from visinstruct.tui.context import AppContext

TASKS = ("conversation", "detail", "complex_reasoning")
RESPONSIVE_MS = 100.0


# -- the synthetic store -------------------------------------------------------------------------
def seed_store(db: Path, images: int) -> None:
    """`images` images with captions, three judged conversations each, and their ledger rows."""
    Store(db).close()  # creates the schema
    conn = sqlite3.connect(db)
    now = time.time()
    with conn:
        conn.execute("INSERT INTO runs (id, started_at, finished_at, status, total_units, config) "
                     "VALUES (1, ?, ?, 'finished', ?, '{\"generation\": {\"model\": \"fake\"}}')",
                     (now - 3600, now, images * 3))
        conn.executemany("INSERT INTO images (id, file_name, width, height) "
                         "VALUES (?, ?, 640, 480)",
                         ((i, f"{i:012d}.jpg") for i in range(1, images + 1)))
        conn.executemany("INSERT INTO captions (image_id, idx, text) VALUES (?, ?, ?)",
                         ((i, k, f"A person number {k} stands near a table in scene {i}.")
                          for i in range(1, images + 1) for k in range(5)))
        conn.executemany(
            "INSERT INTO llm_calls (id, key, run_id, image_id, task, stage, model, endpoint, "
            "status, latency_ms, tokens_in, tokens_out, started_at, finished_at) "
            "VALUES (?, ?, 1, ?, ?, ?, 'fake', ?, 'ok', ?, 300, 120, ?, ?)",
            ((c, f"k{c}", (c - 1) // 6 + 1, TASKS[((c - 1) // 2) % 3],
              "generate" if c % 2 else "judge", "mixtral-a" if c % 3 else "mixtral-b",
              200.0 + c % 700, now - 3600 + c * 0.005, now - 3599 + c * 0.005)
             for c in range(1, images * 6 + 1)))
        conn.executemany(
            "INSERT INTO generations (id, image_id, task, prompt_version, model, call_id, status, "
            "raw, problems, purpose, created_at) VALUES (?, ?, ?, 'v1', 'fake', ?, 'ok', '', '[]', "
            "'run', ?)",
            ((g, (g - 1) // 3 + 1, TASKS[(g - 1) % 3], 2 * g - 1, now)
             for g in range(1, images * 3 + 1)))
        conn.executemany(
            "INSERT INTO pairs (id, generation_id, idx, question, answer) VALUES (?, ?, ?, ?, ?)",
            ((p, (p - 1) // 3 + 1, (p - 1) % 3, f"What is happening in part {p % 7} of the scene?",
              "A person stands near a table with a cup on it.")
             for p in range(1, images * 9 + 1)))
        conn.executemany(
            "INSERT INTO judgements (pair_id, generation_id, score, reason, call_id, "
            "prompt_version, model, created_at) VALUES (?, ?, ?, 'synthetic', ?, 'j1', 'fake', ?)",
            ((p, (p - 1) // 3 + 1, float(3 + p * 7 % 8), 2 * ((p - 1) // 3 + 1), now)
             for p in range(1, images * 9 + 1)))
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('judge_threshold', '7')")
    conn.close()
    # As a run leaves its store: the writer folds what it wrote into the pair tally on close.
    Store(db).close()


# -- the synthetic event stream -------------------------------------------------------------------
def event_stream(units: int) -> list[Event]:
    """What a run of `units` (image, task) units emits, with ~64 calls in flight at a time."""
    stream: list[Event] = [RunStarted(1, units, 0, units // 3, TASKS, "fake", "fake")]
    endpoints = ("mixtral-a", "mixtral-b")
    window: list[list[Event]] = []
    call_id = 0
    for unit in range(units):
        image, task, endpoint = 100_000 + unit // 3, TASKS[unit % 3], endpoints[unit % 2]
        finishing: list[Event] = []
        for stage in ("generate", "judge"):
            call_id += 1
            stream.append(CallStarted(call_id, stage, image, task, "fake", endpoint, 1))
            if unit % 50 == 0 and stage == "judge":
                finishing.append(CallFinished(call_id, stage, image, task, "fake", "", 1, "error",
                                              900.0, 0, 0, "transient", "ModelError",
                                              "Received server error (500) from primary"))
                call_id += 1
                stream.append(CallStarted(call_id, stage, image, task, "fake", endpoint, 2))
            finishing.append(CallFinished(call_id, stage, image, task, "fake", endpoint, 1, "ok",
                                          250.0 + unit % 300, 300, 120))
        finishing.append(PairsJudged(unit + 1, image, task,
                                     tuple(float(3 + (unit + k) % 8) for k in range(3)),
                                     sum(1 for k in range(3) if 3 + (unit + k) % 8 >= 7), 7.0))
        finishing.append(ImageDone(image, task, True, unit + 1, units))
        if unit % 20 == 0:
            finishing.append(EndpointHealth("fake", endpoint, 32, unit, 0, 0, 250.0, 540.0,
                                            unit * 120, "healthy", limit=64, ceiling=64))
        if unit % 500 == 0:
            finishing.append(CostUpdated(unit * 0.001, 0.002, units * 0.001))
        window.append(finishing)
        if len(window) > 32:
            stream.extend(window.pop(0))
    for finishing in window:
        stream.extend(finishing)
    return stream


class Producer(threading.Thread):
    """Feeds events into the app's buffer at `rate` per second, in 5 ms slices."""

    def __init__(
        self, app: VisinstructApp, stream: list[Event], rate: float, seconds: float
    ) -> None:
        super().__init__(daemon=True, name="bench-producer")
        self.app, self.stream, self.rate, self.seconds = app, stream, rate, seconds
        self.sent = 0
        self.finished_at = 0.0

    def run(self) -> None:
        emit = self.app.buffer.emit
        start = time.perf_counter()
        while True:
            elapsed = time.perf_counter() - start
            if elapsed >= self.seconds or self.sent >= len(self.stream):
                self.finished_at = time.perf_counter()
                return
            due = min(len(self.stream), int(elapsed * self.rate))
            while self.sent < due:
                emit(self.stream[self.sent])
                self.sent += 1
            time.sleep(0.005)


# -- the app under test ---------------------------------------------------------------------------
class BenchApp(VisinstructApp):
    """The real app plus one key whose action changes a one-line label (a trivial visible
    change)."""

    BINDINGS = [Binding("f9", "ping", "Ping", show=False)]

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self.pings = 0
        self.answered: asyncio.Future[float] | None = None
        self.ping_label = Label("ping 0", id="ping")

    async def add_ping_label(self) -> None:
        await self.screen.mount(self.ping_label)

    def action_ping(self) -> None:
        self.pings += 1
        self.ping_label.update(f"ping {self.pings}", layout=False)
        self.call_after_refresh(self._pong)

    def _pong(self) -> None:
        if self.answered is not None and not self.answered.done():
            self.answered.set_result(time.perf_counter())

    async def key_latency_ms(self) -> float:
        """Post the key as the terminal driver would; ms until its change is on screen."""
        self.answered = asyncio.get_running_loop().create_future()
        key = events.Key("f9", None)
        key.set_sender(self)
        sent = time.perf_counter()
        self.post_message(key)
        try:
            answered = await asyncio.wait_for(self.answered, timeout=5.0)
        except TimeoutError:
            return 5000.0
        return (answered - sent) * 1000


@dataclass(frozen=True)
class Step:
    """One rate: events absorbed per second, how long the UI took to catch up, key latency."""

    rate: int
    absorbed_per_s: float
    catch_up_ms: float
    key_p50_ms: float
    key_max_ms: float

    @property
    def kept_up(self) -> bool:
        # Caught up within two drains of the last event, and every key answered in time.
        return self.catch_up_ms <= 150 and self.key_max_ms <= RESPONSIVE_MS


async def measure_rate(app: BenchApp, stream: list[Event], rate: int, seconds: float) -> Step:
    before = app.state.events_absorbed
    producer = Producer(app, stream, rate, seconds)
    started = time.perf_counter()
    producer.start()
    latencies: list[float] = []
    while producer.is_alive():
        latencies.append(await app.key_latency_ms())
        await asyncio.sleep(0.1)
    producer.join()
    stopped = producer.finished_at
    while len(app.buffer) and time.perf_counter() - stopped < 5:
        await asyncio.sleep(0.005)
    while app.runs.drain_timer is not None and time.perf_counter() - stopped < 5:
        await asyncio.sleep(0.005)  # the last drain, already scheduled
    caught_up = time.perf_counter()
    absorbed = app.state.events_absorbed - before
    return Step(rate, absorbed / (caught_up - started), (caught_up - stopped) * 1000,
                statistics.median(latencies), max(latencies))


async def open_review_seconds(app: BenchApp, pilot: Any, timeout: float = 60.0) -> float | None:
    """Seconds from switching to review until its list shows rows."""
    started = time.perf_counter()
    await app.switch_mode("review")
    while time.perf_counter() - started < timeout:
        tables = [t for t in app.screen.query(DataTable) if t.row_count > 0]
        if tables:
            return time.perf_counter() - started
        await pilot.pause(0.01)
    return None


async def run_benchmark(db: Path, rates: list[int], seconds: float) -> None:
    fake = ModelConfig(name="fake", backend="scripted", max_in_flight=64)
    config = Config(db=db, generation=GenerationConfig(model="fake"),
                    judge=JudgeConfig(model="fake"), models={"fake": fake})
    app = BenchApp(AppContext(config=config, db_path=db))
    stream = event_stream(sum(rates) * int(seconds + 1) // 6 + 1000)
    gc.freeze()  # the prepared events are not the app's garbage: keep them out of collections
    async with app.run_test(size=(120, 40)) as pilot:
        started = time.perf_counter()
        while app.state.run_id is None:  # the monitor's first read of the 100K store
            await pilot.pause(0.02)
        print(f"monitor's first read of the store: {time.perf_counter() - started:.2f} s")
        while any(not w.is_finished for w in app.workers if w.group == "load"):
            await pilot.pause(0.05)  # then the cost, read in the background
        print(f"... and its cost: {time.perf_counter() - started:.2f} s")
        await app.add_ping_label()
        await pilot.pause(0.2)
        print(f"idle key latency: {await app.key_latency_ms():.1f} ms")
        print(f"{'events/s fed':>13} {'absorbed/s':>11} {'catch-up':>9} {'key p50':>8} "
              f"{'key max':>8}  responsive")
        best = 0
        offset = 0
        for rate in rates:
            step = await measure_rate(app, stream[offset:], rate, seconds)
            offset += int(rate * seconds)
            print(f"{step.rate:>13,} {step.absorbed_per_s:>11,.0f} {step.catch_up_ms:>7.0f}ms "
                  f"{step.key_p50_ms:>6.1f}ms {step.key_max_ms:>6.1f}ms  "
                  f"{'yes' if step.kept_up else 'no'}")
            if step.kept_up:
                best = max(best, int(step.absorbed_per_s))
        print(f"events/s absorbed while a key is answered within {RESPONSIVE_MS:.0f} ms: "
              f"{best:,} (target 2,000)")
        await pilot.pause(0.5)
        opened = await open_review_seconds(app, pilot)
        if opened is None:
            print("review list: could not be measured (no rows appeared)")
        else:
            print(f"review list open on the store: {opened:.2f} s (target < 2 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=3.0, help="per rate step")
    parser.add_argument("--rates", default="1000,2000,4000,8000,16000,32000,64000")
    parser.add_argument("--seed-cache", type=Path, default=None,
                        help="build the synthetic store here once; later runs copy it")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        started = time.perf_counter()
        cache = args.seed_cache
        if cache is None:
            seed_store(db, args.images)
        else:
            # A copy per run: the app migrates and writes the store it opens.
            if not cache.exists():
                seed_store(cache, args.images)
            shutil.copyfile(cache, db)
        print(f"synthetic store: {args.images:,} images, {args.images * 9:,} judged pairs "
              f"({time.perf_counter() - started:.1f} s to build)")
        asyncio.run(run_benchmark(db, rates, args.seconds))


if __name__ == "__main__":
    main()
