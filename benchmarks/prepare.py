"""Prepare and export at real size: synthetic COCO, mix665k, GQA and VQAv2 files; time and peak RSS.

Builds (once, cached in --work) files the size of the real ones: 118K images with 591K
captions, 860K instances with segmentation polygons (about 450 MB), 665K mix665k records
(about 1 GB), GQA train scene graphs (75K images, 1.2M objects) and balanced questions
(943K, with GQA's fields), and VQAv2 train questions and annotations (444K). Runs
`visinstruct prepare` on them in a child process, then `visinstruct export --format llava`
of 150K conversations (not with `--sources qa`), and prints the figures. `--scale 0.25`
builds every file at a quarter size; `--sources qa` prepares the captions, GQA and VQAv2
files only (no instances, no mix665k).
Targets: prepare <= 180 s (COCO and mix665k) and <= 1.5 GB peak RSS; export <= 30 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The benchmarks are scripts, not an installed package: the sibling module is found by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import qa_files  # type: ignore[import-not-found]  # noqa: E402

IMAGES = 118_287
CAPTIONS_PER_IMAGE = 5
INSTANCES = 860_001
MIX_RECORDS = 665_298
WORDS = ("a man woman dog cat sits stands on the table near street with red blue green "
         "large small two three people kitchen bus train plate of food next to in front "
         "window grass field").split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def write_captions(path: Path, rng: random.Random) -> None:
    with path.open("w") as out:
        out.write('{"info": {"description": "synthetic"}, "licenses": [], "images": [')
        for i in range(IMAGES):
            out.write(("," if i else "") + json.dumps(
                {"license": 1, "file_name": f"{i + 1:012d}.jpg", "height": 480, "width": 640,
                 "id": i + 1}))
        out.write('], "annotations": [')
        n = 0
        for i in range(IMAGES):
            for _ in range(CAPTIONS_PER_IMAGE):
                out.write(("," if n else "") + json.dumps(
                    {"image_id": i + 1, "id": n + 1, "caption": " " + sentence(rng, 10) + "\n"}))
                n += 1
        out.write("]}")


def write_instances(path: Path, rng: random.Random) -> None:
    with path.open("w") as out:
        out.write('{"info": {}, "licenses": [], "images": [')
        for i in range(IMAGES):
            out.write(("," if i else "") + json.dumps(
                {"file_name": f"{i + 1:012d}.jpg", "height": 480, "width": 640, "id": i + 1}))
        out.write('], "annotations": [')
        for n in range(INSTANCES):
            x, y = rng.uniform(0, 500), rng.uniform(0, 350)
            # About 56 polygon numbers per instance: what makes the real file 448 MB.
            polygon = [round(rng.uniform(0, 600), 2) for _ in range(56)]
            out.write(("," if n else "") + json.dumps(
                {"segmentation": [polygon], "area": 1000.0, "iscrowd": 0,
                 "image_id": n % IMAGES + 1, "bbox": [round(x, 2), round(y, 2), 100.0, 80.0],
                 "category_id": 1 + n % 80 if n % 80 + 1 <= 80 else 1, "id": n + 1}))
        cats = [{"supercategory": "thing", "id": c, "name": f"category{c}"} for c in range(1, 91)]
        out.write('], "categories": ' + json.dumps(cats) + "}")


def write_mix665k(path: Path, rng: random.Random) -> None:
    with path.open("w") as out:
        out.write("[")
        for n in range(MIX_RECORDS):
            kind = n % 5
            image_id = rng.randint(1, IMAGES)
            if kind == 0:
                record = {"id": str(n), "model": "", "conversations": [
                    {"from": "human", "value": sentence(rng, 40)},
                    {"from": "gpt", "value": sentence(rng, 300)}]}
            elif kind == 1:
                record = {"id": f"{image_id:012d}", "image": f"coco/train2017/{image_id:012d}.jpg",
                          "conversations": [
                              {"from": "human", "value": "<image>\nWhat is the man doing?"},
                              {"from": "gpt", "value": sentence(rng, 80)},
                              {"from": "human", "value": "Where is the dog?"},
                              {"from": "gpt", "value": sentence(rng, 80)},
                              {"from": "human", "value": "Why might he be there?"},
                              {"from": "gpt", "value": sentence(rng, 80)}]}
            elif kind == 2:
                record = {"id": f"{image_id:012d}", "image": f"coco/train2017/{image_id:012d}.jpg",
                          "conversations": [
                              {"from": "human", "value": "<image>\nDescribe the image in detail."},
                              {"from": "gpt", "value": sentence(rng, 260)}]}
            elif kind == 3:
                questions = []
                for _ in range(8):
                    questions += [{"from": "human", "value": sentence(rng, 6) + "?\nAnswer the "
                                   "question using a single word or phrase."},
                                  {"from": "gpt", "value": rng.choice(WORDS)}]
                questions[0]["value"] = "<image>\n" + questions[0]["value"]
                record = {"id": f"{image_id:012d}", "image": f"coco/train2017/{image_id:012d}.jpg",
                          "conversations": questions}
            else:
                record = {"id": f"gqa{n}", "image": f"gqa/images/{n}.jpg", "conversations": [
                    {"from": "human", "value": "<image>\n" + sentence(rng, 30)},
                    {"from": "gpt", "value": sentence(rng, 60)}]}
            out.write(("," if n else "") + json.dumps(record))
        out.write("]")


def build(work: Path, scale: float = 1.0, skip: tuple[str, ...] = ()) -> dict[str, Path]:
    paths = {"captions": work / "captions_train2017.json",
             "instances": work / "instances_train2017.json",
             "mix665k": work / "llava_v1_5_mix665k.json",
             "gqa_scene_graphs": work / "train_sceneGraphs.json",
             "gqa_questions": work / "train_balanced_questions.json",
             "vqa": work / "v2_OpenEnded_mscoco_train2014_questions.json"}
    coco_images = IMAGES
    writers = {
        "captions": write_captions, "instances": write_instances, "mix665k": write_mix665k,
        "gqa_scene_graphs": lambda p, r: qa_files.write_scene_graphs(p, r, scale),
        "gqa_questions": lambda p, r: qa_files.write_gqa_questions(p, r, scale),
        "vqa": lambda p, r: qa_files.write_vqa(
            p, work / "v2_mscoco_train2014_annotations.json", r, scale, coco_images)}
    for name, path in paths.items():
        if path.exists() or name in skip:
            continue
        started = time.monotonic()
        partial = path.with_suffix(".part")
        writers[name](partial, random.Random(name))
        partial.rename(path)
        print(f"built {path.name}: {path.stat().st_size / 1e6:,.0f} MB in "
              f"{time.monotonic() - started:,.0f} s", file=sys.stderr)
    return paths


def timed_child(args: list[str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Run a child; return wall seconds, its peak RSS in MB, and the result."""
    code = ("import resource, subprocess, sys, time, json\n"
            "t = time.monotonic(); "
            "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "print(json.dumps([time.monotonic() - t, "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, r.returncode, "
            "r.stdout[-2000:], r.stderr[-2000:]]))")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         check=True)
    seconds, rss, code_, stdout, stderr = json.loads(out.stdout)
    return seconds, rss, subprocess.CompletedProcess(args, code_, stdout, stderr)


def seed_conversations(db: Path, n: int) -> None:
    """Put n judged conversations of 3 pairs each straight into a prepared store."""
    import sqlite3

    conn = sqlite3.connect(db)
    ids = [row[0] for row in conn.execute("SELECT id FROM images ORDER BY id LIMIT ?", (n,))]
    now = time.time()
    with conn:
        conn.executemany(
            "INSERT INTO generations (id, image_id, task, prompt_version, model, status, "
            "purpose, created_at) VALUES (?, ?, 'conversation', 'bench', 'bench', 'ok', 'run', ?)",
            [(i + 1, image_id, now) for i, image_id in enumerate(ids)])
        conn.executemany(
            "INSERT INTO pairs (id, generation_id, idx, question, answer) VALUES (?, ?, ?, ?, ?)",
            [(g * 3 + k + 1, g + 1, k, f"What is happening in part {k}?",
              "A person stands near a table with plates of food and a dog sits on the floor.")
             for g in range(len(ids)) for k in range(3)])
        conn.executemany(
            "INSERT INTO judgements (pair_id, generation_id, score, reason, prompt_version, "
            "model, created_at) VALUES (?, ?, 8, 'ok', 'bench', 'bench', ?)",
            [(g * 3 + k + 1, g + 1, now) for g in range(len(ids)) for k in range(3)])
    conn.close()


def _scale(factor: float) -> None:
    """Shrink every file's size to `factor` of the real one (for a quick run)."""
    global IMAGES, INSTANCES, MIX_RECORDS
    IMAGES, INSTANCES = int(IMAGES * factor), int(INSTANCES * factor)
    MIX_RECORDS = int(MIX_RECORDS * factor)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path,
                        default=Path(tempfile.gettempdir()) / "visinstruct-bench")
    parser.add_argument("--conversations", type=int, default=150_000)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="build every file at this fraction of the real size")
    parser.add_argument("--sources", choices=("all", "qa"), default="all",
                        help="qa: prepare captions, GQA and VQAv2 only")
    options = parser.parse_args()
    if options.scale != 1.0:
        _scale(options.scale)
        options.conversations = int(options.conversations * options.scale)
        options.work = options.work.with_name(f"{options.work.name}-x{options.scale:g}")
    options.work.mkdir(parents=True, exist_ok=True)
    paths = build(options.work, options.scale,
                  ("instances", "mix665k") if options.sources == "qa" else ())
    qa = ["--gqa-scene-graphs", str(paths["gqa_scene_graphs"]),
          "--gqa-questions", str(paths["gqa_questions"]),
          "--vqa-questions", str(paths["vqa"]),
          "--vqa-annotations", str(options.work / "v2_mscoco_train2014_annotations.json")]
    coco = ["--coco-instances", str(paths["instances"]), "--baseline", str(paths["mix665k"])]
    db = options.work / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    cli = [sys.executable, "-m", "visinstruct.core.cli"]
    seconds, rss, result = timed_child([*cli, "prepare", "--db", str(db), "--json",
                                        "--coco-captions", str(paths["captions"]),
                                        *(coco if options.sources == "all" else []), *qa])
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        return 1
    store = json.loads(result.stdout)["store"]
    print(f"prepare: {seconds:,.1f} s wall, {rss:,.0f} MB peak RSS "
          f"(targets: <= 180 s, <= 1,536 MB); indexed {store['images']:,} images, "
          f"{store['captions']:,} captions, {store['boxes']:,} boxes, "
          f"{store['baseline_conversations']:,} baseline conversations, "
          f"{store['images_by_source']['gqa']:,} GQA images, {store['facts']:,} facts "
          f"(scale {options.scale:g}, sources {options.sources})")
    if options.sources == "qa":
        return 0
    seed_conversations(db, options.conversations)
    out = options.work / "export.json"
    seconds, rss, result = timed_child([*cli, "export", "--format", "llava", "--db", str(db),
                                        "--out", str(out), "--threshold", "7"])
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        return 1
    print(f"export --format llava: {options.conversations:,} conversations in {seconds:,.1f} s "
          f"({options.conversations / seconds:,.0f}/s), {rss:,.0f} MB peak RSS (target: <= 30 s); "
          f"{out.stat().st_size / 1e6:,.0f} MB written")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
