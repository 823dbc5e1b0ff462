"""Endpoint pool against a loopback fleet with a capacity model, vs the naive one-in-flight design.

The fleet (a child process running the fake SageMaker runtime): E endpoints of I instances,
each instance serving up to B requests at once with latency base * (1 + (busy - 1) / B),
and throttling (400 ThrottlingException) past B*I in service plus a small queue. The fleet's
capacity is E*I*B / (base * (2 - 1/B)) calls per second. The pipeline runs over enough images
to reach steady state, through the real boto3 client and the real pool; then the naive
design (max_in_flight 1 per endpoint) runs for a while in the same process. Prints achieved
throughput as a fraction of capacity, the ratio over naive, p50/p95 latency and throttles.
Target: at least 0.9 of capacity.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# The fleet is the tests' fake SageMaker runtime, imported as `tests.fakes` from the root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def serve(options: argparse.Namespace) -> int:
    """Child: the fleet, until stdin closes."""
    from tests.fakes.model_replies import reply_to_request
    from tests.fakes.sagemaker_server import SageMakerServer
    from tests.fakes.scripting import Capacity, Reply, Script

    capacity = Capacity(instances=options.instances, per_instance=options.batch,
                        base_latency_s=options.base, queue=options.queue)
    script = Script(Reply(text=reply_to_request), capacity=capacity)
    with SageMakerServer(script) as server:
        print(server.port, flush=True)
        sys.stdin.read()
    return 0


def seed(db: Path, images: int) -> None:
    from visinstruct.core.store.database import Store

    Store(db).close()
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO images (id, file_name, width, height) "
                         "VALUES (?, ?, 640, 480)",
                         [(i, f"{i:012d}.jpg") for i in range(1, images + 1)])
        conn.executemany("INSERT INTO captions (image_id, idx, text) VALUES (?, ?, ?)",
                         [(i, k, f"Someone walks a dog past shop {i} while it rains, view {k}.")
                          for i in range(1, images + 1) for k in range(5)])
        conn.executemany("INSERT INTO boxes (image_id, idx, category, x1, y1, x2, y2) "
                         "VALUES (?, 0, 'dog', 0.1, 0.5, 0.3, 0.9)",
                         [(i,) for i in range(1, images + 1)])


def measure(port: int, endpoints: int, ceiling: int, images: int, seconds: float | None,
            work: Path, name: str) -> dict[str, float]:
    """Run the pipeline; throughput over the steady middle of the run."""
    from visinstruct.core import pipeline
    from visinstruct.core.config import Config, GenerationConfig, JudgeConfig, ModelConfig
    from visinstruct.core.events import CallFinished, Event
    from visinstruct.core.store.database import Store

    db = work / f"{name}.db"
    seed(db, images)
    model = ModelConfig(name="mixtral", backend="sagemaker",
                        endpoints=tuple(f"mixtral-{i}" for i in range(endpoints)),
                        max_in_flight=ceiling, read_timeout=60, attempts=4)
    config = Config(db=db, generation=GenerationConfig(model="mixtral"),
                    judge=JudgeConfig(model="mixtral"), models={"mixtral": model})
    os.environ["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = f"http://127.0.0.1:{port}"
    done: list[tuple[float, float]] = []
    throttles = [0]
    lock = threading.Lock()
    cancel = threading.Event()

    def emit(event: Event) -> None:
        if isinstance(event, CallFinished):
            with lock:
                if event.status == "ok":
                    done.append((time.monotonic(), event.latency_ms))
                elif event.error_kind == "backpressure":
                    throttles[0] += 1

    if seconds:
        threading.Timer(seconds, cancel.set).start()
    store = Store(db)
    started = time.monotonic()
    pipeline.run(config, store, emit, cancel)
    elapsed = time.monotonic() - started
    store.close()
    times = sorted(t for t, _ in done)
    # Steady state: drop the ramp-up (first 25% of the run) and the tail (last 10%).
    lo, hi = started + 0.25 * elapsed, started + 0.9 * elapsed
    window = [t for t in times if lo <= t <= hi]
    rate = len(window) / (hi - lo) if hi > lo else 0.0
    latencies = sorted(ms for _, ms in done)
    return {"calls": len(done), "seconds": elapsed, "rate": rate, "throttles": throttles[0],
            "p50_ms": latencies[len(latencies) // 2] if latencies else 0.0,
            "p95_ms": latencies[int(len(latencies) * 0.95)] if latencies else 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoints", type=int, default=2)
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--base", type=float, default=0.4, help="base latency, seconds")
    parser.add_argument("--queue", type=int, default=16)
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--ceiling", type=int, default=128, help="max_in_flight per endpoint")
    parser.add_argument("--naive-seconds", type=float, default=20.0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        return serve(options)
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--instances", str(options.instances),
         "--batch", str(options.batch), "--base", str(options.base), "--queue", str(options.queue)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdin is not None
    port = int(child.stdout.readline())
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_EC2_METADATA_DISABLED": "true"}.items():
        os.environ[key] = value
    per_endpoint = options.instances * options.batch / (options.base * (2 - 1 / options.batch))
    capacity = options.endpoints * per_endpoint
    try:
        with tempfile.TemporaryDirectory() as tmp:
            pool = measure(port, options.endpoints, options.ceiling, options.images, None,
                           Path(tmp), "pool")
            naive = measure(port, options.endpoints, 1, options.images, options.naive_seconds,
                            Path(tmp), "naive")
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    print(f"fleet: {options.endpoints} endpoints x {options.instances} instances x "
          f"{options.batch} concurrent, base latency {options.base * 1000:.0f} ms, queue "
          f"{options.queue}: capacity {capacity:,.1f} calls/s")
    print(f"pool:  {pool['calls']:,} calls in {pool['seconds']:,.1f} s; steady "
          f"{pool['rate']:,.1f} calls/s = {pool['rate'] / capacity:.2f} of capacity "
          f"(target >= 0.90); p50 {pool['p50_ms']:,.0f} ms, p95 {pool['p95_ms']:,.0f} ms; "
          f"{pool['throttles']:,} throttles")
    print(f"naive: {naive['calls']:,} calls in {naive['seconds']:,.1f} s; steady "
          f"{naive['rate']:,.1f} calls/s = {naive['rate'] / capacity:.3f} of capacity; "
          f"p50 {naive['p50_ms']:,.0f} ms")
    if naive["rate"]:
        print(f"pool / naive: {pool['rate'] / naive['rate']:,.1f}x")
    print(json.dumps({"capacity": capacity, "pool": pool, "naive": naive}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
