"""Paths to the demo data: 24 imaginary COCO-style scenes with captions, boxes and a baseline,
4 imaginary GQA scene graphs with questions, and VQAv2-style questions on the COCO-style scenes.

Written by hand for visinstruct (no real photos, no copied text), so every part runs offline.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from visinstruct.dataset.errors import DataError

_PACKAGE = "visinstruct.dataset.sample"

CAPTIONS_FILE = "captions_sample.json"
INSTANCES_FILE = "instances_sample.json"
BASELINE_FILE = "baseline_sample.json"
GQA_SCENE_GRAPHS_FILE = "gqa_scene_graphs_sample.json"
GQA_QUESTIONS_FILE = "gqa_questions_sample.json"
VQA_QUESTIONS_FILE = "vqa_questions_sample.json"
VQA_ANNOTATIONS_FILE = "vqa_annotations_sample.json"


def _resource_path(name: str) -> Path:
    """The on-disk path of one bundled sample file."""
    resource = files(_PACKAGE).joinpath(name)
    # Readers take paths, so a zipped install (no real files) is refused with a clear message.
    if not isinstance(resource, Path) or not resource.is_file():
        raise DataError(
            f"{_PACKAGE}/{name}: sample data file not found on disk; "
            "reinstall visinstruct from a source tree or wheel (not a zip)"
        )
    return resource


SAMPLE_DIR: Path = Path(str(files(_PACKAGE)))


def captions_path() -> Path:
    """COCO captions layout (`info, licenses, images, annotations`) for the 24 demo images."""
    return _resource_path(CAPTIONS_FILE)


def instances_path() -> Path:
    """COCO instances layout (boxes, segmentation, the 80 real categories) for the demo images."""
    return _resource_path(INSTANCES_FILE)


def baseline_path() -> Path:
    """mix665k-shaped JSON array of baseline records for the demo images."""
    return _resource_path(BASELINE_FILE)


def gqa_scene_graphs_path() -> Path:
    """GQA scene graphs layout (`{imageId: {width, height, objects: {...}}}`) for 4 scenes."""
    return _resource_path(GQA_SCENE_GRAPHS_FILE)


def gqa_questions_path() -> Path:
    """GQA questions layout (`{questionId: {imageId, question, answer, ...}}`) on those scenes."""
    return _resource_path(GQA_QUESTIONS_FILE)


def vqa_questions_path() -> Path:
    """VQAv2 questions layout (`{"questions": [{image_id, question, question_id}], ...}`)."""
    return _resource_path(VQA_QUESTIONS_FILE)


def vqa_annotations_path() -> Path:
    """VQAv2 annotations layout
    (`{"annotations": [{question_id, multiple_choice_answer, ...}]}`)."""
    return _resource_path(VQA_ANNOTATIONS_FILE)
