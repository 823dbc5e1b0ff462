"""Synthetic GQA and VQAv2 files at the real files' sizes, for benchmarks/prepare.py."""

from __future__ import annotations

import json
import random
from pathlib import Path

GQA_IMAGES = 74_942           # train_sceneGraphs.json
GQA_OBJECTS_PER_IMAGE = 16    # about 1.2M objects, as GQA's cleaned train graphs
GQA_QUESTIONS = 943_000       # train_balanced_questions.json
VQA_QUESTIONS = 443_757       # v2 train2014: questions and annotations (10 answers each)
NAMES = ["tree", "man", "shirt", "window", "table", "chair", "car", "building", "sky", "grass",
         "wall", "sign", "pole", "plate", "woman", "dog", "cat", "bus", "street", "fence"]
ATTRIBUTES = ["white", "black", "green", "blue", "red", "wooden", "tall", "small", "large",
              "metal", "open", "brown"]
RELATIONS = ("to the left of", "to the right of", "on", "near", "behind", "in front of",
             "wearing", "holding", "above")


def gqa_image_id(n: int) -> str:
    """The n-th synthetic GQA id: these are the ids of the synthetic mix665k's GQA records."""
    return str(5 * n + 4)


def write_scene_graphs(path: Path, rng: random.Random, scale: float) -> None:
    images = int(GQA_IMAGES * scale)
    with path.open("w") as out:
        out.write("{")
        for n in range(images):
            keys = [str(10_000_000 + n * GQA_OBJECTS_PER_IMAGE + k)
                    for k in range(GQA_OBJECTS_PER_IMAGE)]
            objects = {}
            for key in keys:
                objects[key] = {
                    "name": rng.choice(NAMES), "x": rng.randint(0, 400), "y": rng.randint(0, 300),
                    "w": rng.randint(10, 200), "h": rng.randint(10, 150),
                    "attributes": rng.sample(ATTRIBUTES, rng.randint(0, 3)),
                    "relations": [{"name": rng.choice(RELATIONS), "object": rng.choice(keys)}
                                  for _ in range(rng.randint(1, 4))]}
            scene = {"width": 640, "height": 480, "location": "street", "objects": objects}
            out.write(("," if n else "") + json.dumps(gqa_image_id(n)) + ":" + json.dumps(scene))
        out.write("}")


def write_gqa_questions(path: Path, rng: random.Random, scale: float) -> None:
    images = int(GQA_IMAGES * scale)
    with path.open("w") as out:
        out.write("{")
        for n in range(int(GQA_QUESTIONS * scale)):
            qid = f"{n:08d}"
            name = rng.choice(NAMES)
            # The fields GQA carries besides the question and answer make its files this big.
            body = {
                "semantic": [{"operation": "select", "dependencies": [], "argument": f"{name} (1)"},
                             {"operation": "relate", "dependencies": [0],
                              "argument": f"{rng.choice(NAMES)},{rng.choice(RELATIONS)},s (2)"},
                             {"operation": "query", "dependencies": [1], "argument": "color"}],
                "entailed": [f"{rng.randrange(10**8):08d}" for _ in range(rng.randint(0, 6))],
                "equivalent": [qid], "question": f"What color is the {name} near the table?",
                "imageId": gqa_image_id(rng.randrange(images)), "isBalanced": True,
                "groups": {"global": "color", "local": f"10q-{name}_color"},
                "answer": rng.choice(ATTRIBUTES),
                "semanticStr": f"select: {name} (1)->relate: table,near,s (2)->query: color [1]",
                "annotations": {"answer": {"0": "1"}, "question": {"4": "1"},
                                "fullAnswer": {"1": "1"}},
                "types": {"detailed": "relS", "semantic": "rel", "structural": "query"},
                "fullAnswer": f"The {name} is {rng.choice(ATTRIBUTES)}."}
            out.write(("," if n else "") + json.dumps(qid) + ":" + json.dumps(body))
        out.write("}")


def write_vqa(questions_path: Path, annotations_path: Path, rng: random.Random, scale: float,
              coco_images: int) -> None:
    count = int(VQA_QUESTIONS * scale)
    with questions_path.open("w") as out:
        out.write('{"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", '
                  '"license": {}, "data_subtype": "train2014", "questions": [')
        for n in range(count):
            out.write(("," if n else "") + json.dumps(
                {"image_id": n % coco_images + 1, "question": "What is the man holding?",
                 "question_id": n + 1}))
        out.write("]}")
    with annotations_path.open("w") as out:
        out.write('{"info": {}, "license": {}, "data_subtype": "train2014", "annotations": [')
        for n in range(count):
            answer = rng.choice(NAMES)
            out.write(("," if n else "") + json.dumps(
                {"question_type": "what is the", "multiple_choice_answer": answer,
                 "answers": [{"answer": answer, "answer_confidence": "yes", "answer_id": k + 1}
                             for k in range(10)],
                 "image_id": n % coco_images + 1, "answer_type": "other", "question_id": n + 1}))
        out.write('], "data_type": "mscoco"}')
