"""What `run` and the start dialog pay to say how many units a prompt version change makes owed
again (Backlog.redone), on the synthetic store of benchmarks/tui.py (150,000 images, 450,000
units, 900,000 ledger rows by default).

Three cases, as printed figures: no other prompt version in the store (the usual case: not
looked for), other versions registered but every unit made with the active ones, and every
unit made with another version (all owed again). Target: under 2 s each at 450,000 units.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from visinstruct.benchmarks.tui import TASKS, seed_store
from visinstruct.core.config import default_config
from visinstruct.core.pipeline.backlog import Backlog
from visinstruct.core.store.database import Store


def timed(db: Path, label: str) -> None:
    config = default_config()
    model = replace(config.models["tiny"], name="fake")
    config = replace(config, db=db, generation=replace(config.generation, model="fake"),
                     judge=replace(config.judge, model="fake"),
                     models={**config.models, "fake": model})
    with Store(db) as store:
        backlog = Backlog.load(config, store)
        started = time.perf_counter()
        found = backlog.redone()
        took = time.perf_counter() - started
    said = "; ".join(again.describe() for again in found) or "nothing owed again"
    print(f"{label}: {took:.2f} s ({said})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=150_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        seed_store(db, args.images)
        with Store(db) as store:  # the synthetic rows take the active versions
            backlog = Backlog.load(default_config(), store)
            active = {task: backlog.templates[task].version for task in TASKS}
            judge = backlog.judge_template.version
        conn = sqlite3.connect(db)
        with conn:
            for task, version in active.items():
                conn.execute("UPDATE generations SET prompt_version = ? WHERE task = ?",
                             (version, task))
            conn.execute("UPDATE judgements SET prompt_version = ?", (judge,))
        timed(db, "no other version")
        with conn:
            for task in (*TASKS, "judge"):
                conn.execute("INSERT INTO prompts VALUES (?, ?, ?, 'old', 0)",
                             (f"old-{task}", f"{task}_vision", task))
        timed(db, "other versions, none used")
        with conn:
            conn.execute("UPDATE generations SET prompt_version = 'old-' || task")
        conn.close()
        timed(db, "every unit made with another version")


if __name__ == "__main__":
    main()
