"""Time `export(..., "llava", ...)` on 150K synthetic conversations and print the rate."""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from visinstruct.core.export.validate import validate_llava_file
from visinstruct.core.export.writers import ExportItem, export
from visinstruct.core.records import TASKS, Pair

SUBJECTS = ("a red bus", "two zebras", "a plate of pasta", "a skier", "an old clock tower")
PLACES = ("on a busy street", "in a dry field", "on a wooden table", "on a snowy slope")


def synthetic_items(count: int, seed: int = 0) -> Iterator[ExportItem]:
    """`count` items of 3 or 4 pairs each, of varied length, reproducible from `seed`."""
    rng = random.Random(seed)
    for number in range(count):
        subject, place = rng.choice(SUBJECTS), rng.choice(PLACES)
        pairs = tuple(
            Pair(
                f"What can you tell about {subject} {place}? (question {turn + 1})",
                f"The image shows {subject} {place}. " * rng.randint(2, 8),
            )
            for turn in range(rng.randint(3, 4))
        )
        yield ExportItem(image_id=100_000 + number, task=rng.choice(TASKS), pairs=pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=150_000, help="conversations to export")
    parser.add_argument("--validate", action="store_true", help="also time validate_llava_file")
    args = parser.parse_args()

    started = time.perf_counter()
    # Built before timing, so the figure is the writer's alone (validation, encoding, disk).
    items = list(synthetic_items(args.count))
    print(f"built {len(items)} items in {time.perf_counter() - started:.2f} s")

    with tempfile.TemporaryDirectory(prefix="visinstruct-bench-") as folder:
        out = Path(folder) / "llava.json"
        started = time.perf_counter()
        summary = export(items, "llava", out)
        seconds = time.perf_counter() - started
        size_mb = out.stat().st_size / 1e6
        print(f"export llava: {summary.records} records, {summary.pairs} pairs, {size_mb:.0f} MB")
        print(f"  {seconds:.2f} s, {summary.records / seconds:,.0f} records/s")
        if args.validate:
            started = time.perf_counter()
            report = validate_llava_file(out)
            seconds = time.perf_counter() - started
            print(f"validate: {report.summary()}")
            print(f"  {seconds:.2f} s, {report.records / seconds:,.0f} records/s")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak_mb:.0f} MB (mostly the items list itself)")


if __name__ == "__main__":
    main()
