"""Orchestrator overhead: the whole pipeline against the scripted backend with zero latency.

Prints calls per second end to end (generation, parsing, judging, ledger and store writes)
and peak RSS, at two store sizes, each in its own child process so the RSS figures are
separate. Target: at least 2,000 calls/s, and RSS flat in the number of images. Last, the CPU
cost of the quality gates per pair, timed alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def seed_store(db: Path, images: int) -> None:
    """A store with `images` images of 5 captions and 4 boxes each, written directly."""
    from visinstruct.core.store.database import Store

    Store(db).close()  # creates the schema
    conn = sqlite3.connect(db)
    with conn:
        # Generators, not lists: the seeding must not raise the peak RSS being measured.
        conn.executemany("INSERT INTO images (id, file_name, width, height) "
                         "VALUES (?, ?, 640, 480)",
                         ((i, f"{i:012d}.jpg") for i in range(1, images + 1)))
        conn.executemany("INSERT INTO captions (image_id, idx, text) VALUES (?, ?, ?)",
                         ((i, k, f"A person number {k} stands near a table in scene {i}.")
                          for i in range(1, images + 1) for k in range(5)))
        conn.executemany("INSERT INTO boxes (image_id, idx, category, x1, y1, x2, y2, crowd) "
                         "VALUES (?, ?, ?, 0.1, 0.2, 0.5, 0.9, 0)",
                         ((i, k, ("person", "dining table", "cup", "chair")[k])
                          for i in range(1, images + 1) for k in range(4)))
    conn.close()


def child(images: int, workers: int) -> None:
    """Run the pipeline once and print one JSON line of figures."""
    from visinstruct.core import pipeline
    from visinstruct.core.config import (
        Config,
        GenerationConfig,
        JudgeConfig,
        ModelConfig,
        SourceConfig,
    )
    from visinstruct.core.events import Event
    from visinstruct.core.store.database import Store

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        seed_store(db, images)
        fake = ModelConfig(name="fake", backend="scripted", max_in_flight=workers)
        config = Config(db=db, source=SourceConfig(), generation=GenerationConfig(model="fake"),
                        judge=JudgeConfig(model="fake"), models={"fake": fake})
        calls = {"n": 0}
        window = {"first": 0.0, "last": 0.0}
        lock = threading.Lock()

        def emit(event: Event) -> None:
            if type(event).__name__ == "CallFinished":
                with lock:
                    calls["n"] += 1
                    window["last"] = time.perf_counter()
                    if not window["first"]:
                        window["first"] = window["last"]

        store = Store(db)
        started = time.perf_counter()
        summary = pipeline.run(config, store, emit)
        elapsed = time.perf_counter() - started
        store.close()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        steady = calls["n"] / max(1e-9, window["last"] - window["first"])
        print(json.dumps({"images": images, "units": summary.done_units, "calls": calls["n"],
                          "seconds": elapsed, "steady": steady, "rss_mb": rss,
                          "status": summary.status}))


def gate_cost(replies: int = 5_000) -> tuple[float, int]:
    """CPU microseconds per pair of the quality gates alone, on pairs shaped like the run's."""
    from visinstruct.core.config import GatesConfig
    from visinstruct.core.records import Box, Image, Pair
    from visinstruct.core.text.gates import gate_pairs, prompt_text
    from visinstruct.core.text.prompts import load_prompt

    prompt = prompt_text(load_prompt("conversation"))
    settings = GatesConfig()
    objects = ("person", "dining table", "cup", "chair")
    work = []
    for i in range(replies):
        image = Image(i, f"{i:012d}.jpg", 640, 480,
                      tuple(f"A person number {k} stands near a table in scene {i}."
                            for k in range(5)),
                      tuple(Box(name, (0.1, 0.2, 0.5, 0.9)) for name in objects))
        sides = ("left", "right", "back", "front")
        pairs = [Pair(f"What is the {name} next to in part {k} of scene {i}?",
                      f"The {name} is next to a {objects[k - 1]} near the window, on the {side}.")
                 for k, (name, side) in enumerate(zip(objects, sides, strict=True))]
        work.append((image, pairs))
    started = time.process_time()
    for image, pairs in work:
        gate_pairs(pairs, image, "conversation", settings, prompt=prompt, finish_reason="stop")
    spent = time.process_time() - started
    count = sum(len(pairs) for _, pairs in work)
    return spent / count * 1e6, count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--workers", type=int, default=4,
                        help="max_in_flight: with a zero-latency model, more threads than "
                             "cores only add lock contention")
    parser.add_argument("--wide-workers", type=int, default=64,
                        help="also run the smallest size with this many workers (0: skip)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(options.child, options.workers)
        return 0
    figures = []
    sizes = [int(s) for s in options.sizes.split(",")]
    runs = [(size, options.workers) for size in sizes]
    if options.wide_workers:
        runs.append((sizes[0], options.wide_workers))
    for size, workers in runs:
        out = subprocess.run([sys.executable, __file__, "--child", str(size),
                              "--workers", str(workers)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return 1
        figure = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{figure['images']:>7,} images, {workers:>3} workers: {figure['calls']:,} calls "
              f"in {figure['seconds']:,.1f} s = {figure['calls'] / figure['seconds']:,.0f} "
              f"calls/s end to end ({figure['steady']:,.0f}/s from first to last call, "
              f"without start-up and the closing report); peak RSS {figure['rss_mb']:,.0f} MB")
        if workers == options.workers:
            figures.append(figure)
    rate = min(f["calls"] / f["seconds"] for f in figures)
    print(f"slowest: {rate:,.0f} calls/s (target >= 2,000); "
          f"88K images x 3 tasks x 2 calls would cost "
          f"{88_000 * 6 / rate / 60:,.1f} min of overhead")
    per_pair, count = gate_cost()
    print(f"quality gates: {per_pair:,.1f} us CPU per pair ({count:,} pairs timed alone); at "
          f"{rate:,.0f} calls/s, half of them generations of ~3 pairs, that is "
          f"{per_pair * 3 * rate / 2 / 1e4:,.1f}% of one core")
    if len(figures) > 1:
        print(f"RSS ratio largest/smallest store: "
              f"{figures[-1]['rss_mb'] / figures[0]['rss_mb']:.2f} "
              f"for {figures[-1]['images'] / figures[0]['images']:.0f}x the images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
