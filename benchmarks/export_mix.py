"""Time `visinstruct export --mix` on the 665K-record synthetic mix of benchmarks/prepare.py.

Builds (once, cached in --work, the same cache prepare.py uses) the synthetic
llava_v1_5_mix665k.json (about 1 GB: text-only, GPT-4-style, VQA and GQA records), and a
store holding --conversations kept conversations of ours, then runs `export --mix` in a
child process and prints wall time and peak RSS.
Targets: <= 60 s and <= 1.5 GB peak RSS on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

# The benchmarks are scripts, not an installed package: the sibling module is found by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import prepare  # type: ignore[import-not-found]  # noqa: E402


def build_mix(work: Path) -> Path:
    """The synthetic mix665k of prepare.py, built once."""
    path = work / "llava_v1_5_mix665k.json"
    if not path.exists():
        partial = path.with_suffix(".part")
        prepare.write_mix665k(partial, random.Random("mix665k"))
        partial.rename(path)
    return path


def build_store(work: Path, conversations: int) -> Path:
    """A store with `conversations` COCO images, each with one kept conversation of ours."""
    db = work / f"export-mix-{conversations}.db"
    if db.exists():
        return db
    # Built under another name and renamed when whole, so a build cut short is never reused.
    building = work / f"export-mix-{conversations}.building.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{building}{suffix}").unlink(missing_ok=True)
    # A tiny `prepare` makes the store (with its schema); the images are added below.
    from visinstruct.dataset import sample

    subprocess.run([sys.executable, "-m", "visinstruct.core.cli", "prepare", "--db",
                    str(building), "--coco-captions", str(sample.captions_path())], check=True,
                   capture_output=True)
    conn = sqlite3.connect(building)
    with conn:
        conn.executemany(
            "INSERT OR IGNORE INTO images (id, file_name, width, height, split, source) "
            "VALUES (?, ?, 640, 480, 'train2017', 'coco')",
            [(n, f"{n:012d}.jpg") for n in range(1_000_000, 1_000_000 + conversations)])
    conn.close()
    prepare.seed_conversations(building, conversations)
    with sqlite3.connect(building) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    building.rename(db)
    for suffix in ("-wal", "-shm"):
        Path(f"{building}{suffix}").unlink(missing_ok=True)
    return db


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path,
                        default=Path(tempfile.gettempdir()) / "visinstruct-bench")
    parser.add_argument("--conversations", type=int, default=150_000,
                        help="kept conversations of ours in the store")
    parser.add_argument("--format", choices=("llava", "jsonl"), default="llava")
    options = parser.parse_args()
    options.work.mkdir(parents=True, exist_ok=True)
    mix = build_mix(options.work)
    db = build_store(options.work, options.conversations)
    out = options.work / f"train-mix.{options.format}"
    seconds, rss, result = prepare.timed_child(
        [sys.executable, "-m", "visinstruct.core.cli", "export", "--db", str(db), "--mix",
         str(mix), "--out", str(out), "--format", options.format, "--threshold", "7",
         "--card", str(options.work / "CARD.md")])
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        return 1
    print(result.stderr.rstrip())
    print(f"export --mix --format {options.format}: {mix.stat().st_size / 1e6:,.0f} MB mix "
          f"and {options.conversations:,} conversations of ours in {seconds:,.1f} s wall, "
          f"{rss:,.0f} MB peak RSS (targets: <= 60 s, <= 1,536 MB); "
          f"{out.stat().st_size / 1e6:,.0f} MB written")
    out.unlink()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
