"""Review search on a large store: find a sample by a word of one answer among 100K pairs.

Seeds a store with N pairs (4 per generation, varied words), then times the review list's
first page filtered by a word that only one answer holds: once cold (the FTS index catches
up on every pair written without it, as after a run that crashed; a run that ends indexes
its own pairs) and then warm (what each later search costs).
Target: a warm search under 0.2 s on 100K pairs.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("person table cup chair dog cat street car bus tree sky grass water boat bird horse "
         "kitchen window plate pizza phone laptop bench sign clock train field snow beach "
         "umbrella kite bicycle skateboard").split()


def seed(db: Path, pairs: int) -> str:
    """A store with `pairs` pairs; returns a word that exactly one answer holds."""
    from visinstruct.core.store.database import Store

    Store(db).close()
    rng = random.Random(7)
    generations = pairs // 4
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany("INSERT INTO images (id, file_name, width, height) "
                         "VALUES (?, ?, 640, 480)",
                         ((i, f"{i:012d}.jpg") for i in range(1, generations + 1)))
        conn.executemany(
            "INSERT INTO generations (id, image_id, task, prompt_version, model, status, "
            "created_at) VALUES (?, ?, 'detail', 'v1', 'bench', 'ok', 0)",
            ((i, i) for i in range(1, generations + 1)))
        conn.executemany(
            "INSERT INTO pairs (generation_id, idx, question, answer) VALUES (?, ?, ?, ?)",
            ((g, k, f"What is near the {rng.choice(WORDS)}?",
              " ".join(rng.choice(WORDS) for _ in range(24)))
             for g in range(1, generations + 1) for k in range(4)))
        conn.execute("UPDATE pairs SET answer = answer || ' aardvark' WHERE id = ?",
                     (pairs // 2,))
    conn.close()
    return "aardvark"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=100_000)
    options = parser.parse_args()
    from visinstruct.core.review.samples import SampleFilter, sample_page
    from visinstruct.core.store.database import Store

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "search.db"
        started = time.perf_counter()
        word = seed(db, options.pairs)
        print(f"seeded {options.pairs:,} pairs in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
        with Store(db) as store:
            timings = []
            for _ in range(4):
                started = time.perf_counter()
                page = sample_page(store, SampleFilter(text=word), 7.0)
                timings.append(time.perf_counter() - started)
                assert len(page.rows) == 1, page
        warm = sorted(timings[1:])[len(timings[1:]) // 2]
        print(f"{options.pairs:,} pairs: first search {timings[0]:.3f} s "
              f"(indexes every pair, as after a crashed run), "
              f"then {warm:.4f} s (median of {len(timings) - 1}); target < 0.2 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
