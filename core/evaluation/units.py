"""What an evaluation compares: candidate units, the seeded sample, our pairs and the baseline's."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from visinstruct.core.records import TASKS, Image, Pair
from visinstruct.core.store.database import Store
from visinstruct.core.store.queries import KEPT_SQL, load_images

_CHUNK = 500
NO_CANDIDATES = ("no image has both a kept conversation and a baseline conversation of the same "
                 "task; run `visinstruct prepare --baseline llava_v1_5_mix665k.json` and "
                 "`visinstruct run` first")

# What each side was asked to write, shown to the evaluator as the request in conversation mode.
TASK_REQUESTS = {
    "conversation": "Write a conversation about the photo: a person asks several different "
                    "questions about it and the assistant answers each one.",
    "detail": "Ask for a detailed description of the photo, then give the description.",
    "complex_reasoning": "Ask a question about the photo that needs reasoning beyond what is "
                         "plainly visible, then answer it with careful, well-founded reasoning.",
}


@dataclass(frozen=True)
class Unit:
    """One (image, task) with our kept pairs and the baseline's pairs."""

    image: Image
    task: str
    generation_id: int
    ours: tuple[Pair, ...]
    baseline: tuple[Pair, ...]


def transcript(pairs: Sequence[Pair]) -> str:
    """A conversation as the evaluator reads it: questions and answers in turn."""
    return "\n\n".join(f"Question: {p.question.replace('<image>', '').strip()}\n"
                       f"Answer: {p.answer.strip()}" for p in pairs)


def chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    """`ids` in slices small enough for one IN (...) list."""
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start:start + _CHUNK])


def candidate_units(store: Store, threshold: float) -> dict[int, tuple[str, ...]]:
    """Image id -> tasks that have both a kept conversation of ours and a baseline conversation."""
    found: dict[int, list[str]] = defaultdict(list)
    for image_id, task in store.query(
            f"SELECT DISTINCT k.image_id, k.task FROM pair_state k WHERE {KEPT_SQL} AND EXISTS ("
            "SELECT 1 FROM baseline_conversations b WHERE b.image_id = k.image_id "
            "AND b.task = k.task) ORDER BY k.image_id, k.task", (threshold,)):
        if task in TASKS:
            found[image_id].append(task)
    return {image_id: tuple(t for t in TASKS if t in tasks) for image_id, tasks in found.items()}


def sample_images(candidates: Sequence[int], sample: int, seed: int) -> list[int]:
    """`sample` image ids drawn with a seeded RNG (all of them when 0 or more than there are)."""
    ordered = sorted(candidates)
    if not sample or sample >= len(ordered):
        return ordered
    return sorted(random.Random(seed).sample(ordered, sample))


def load_units(store: Store, tasks_by_image: dict[int, tuple[str, ...]],
               threshold: float) -> list[Unit]:
    """The units of the sampled images: our kept pairs and the first baseline record per task."""
    ids = sorted(tasks_by_image)
    images: dict[int, Image] = {}
    ours: dict[tuple[int, str], list[Pair]] = defaultdict(list)
    generation: dict[tuple[int, str], int] = {}
    baseline: dict[tuple[int, str], tuple[Pair, ...]] = {}
    for chunk in chunks(ids):
        marks = ",".join("?" * len(chunk))
        images.update(load_images(store, chunk))
        for image_id, task, gid, question, answer in store.query(
                f"SELECT image_id, task, generation_id, question, answer FROM pair_state "
                f"WHERE image_id IN ({marks}) AND {KEPT_SQL} ORDER BY image_id, task, idx",
                (*chunk, threshold)):
            ours[(image_id, task)].append(Pair(question, answer))
            generation[(image_id, task)] = gid
        for image_id, task, pairs in store.query(
                f"SELECT image_id, task, pairs FROM baseline_conversations "
                f"WHERE image_id IN ({marks}) ORDER BY id", chunk):
            baseline.setdefault((image_id, task), tuple(Pair(q, a) for q, a in json.loads(pairs)))
    return [Unit(images[image_id], task, generation[(image_id, task)],
                 tuple(ours[(image_id, task)]), baseline[(image_id, task)])
            for image_id in ids if image_id in images
            for task in tasks_by_image[image_id]
            if (image_id, task) in generation and baseline.get((image_id, task))]
