"""Resumable downloads of the GQA and VQAv2 files, and extraction of the JSON files they zip."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from visinstruct.dataset.download import (
    DownloadSpec,
    ProgressCallback,
    _extract_member,
    _writable_dir,
    download,
)
from visinstruct.dataset.errors import DataError

GQA_SCENE_GRAPHS_URL = "https://downloads.cs.stanford.edu/nlp/data/gqa/sceneGraphs.zip"
GQA_QUESTIONS_URL = "https://downloads.cs.stanford.edu/nlp/data/gqa/questions1.2.zip"
VQA_QUESTIONS_URL = (
    "https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa/v2_Questions_Train_mscoco.zip"
)
VQA_ANNOTATIONS_URL = (
    "https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa/v2_Annotations_Train_mscoco.zip"
)
# Which sources `prepare --download` knows; coco means the COCO annotations and mix665k.
DOWNLOAD_SOURCES: tuple[str, ...] = ("coco", "gqa", "vqa")

# (config key, zip name, member used as the source, further members extracted alongside)
_GQA = (
    ("gqa_scene_graphs", "sceneGraphs.zip", "train_sceneGraphs.json", ("val_sceneGraphs.json",)),
    ("gqa_questions", "questions1.2.zip", "train_balanced_questions.json",
     ("val_balanced_questions.json",)),
)
_VQA = (
    ("vqa_questions", "v2_Questions_Train_mscoco.zip",
     "v2_OpenEnded_mscoco_train2014_questions.json", ()),
    ("vqa_annotations", "v2_Annotations_Train_mscoco.zip", "v2_mscoco_train2014_annotations.json",
     ()),
)


def parse_download_sources(text: str) -> tuple[str, ...]:
    """'coco,gqa' -> ('coco', 'gqa'); an unknown name is refused naming the valid ones."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [n for n in names if n not in DOWNLOAD_SOURCES]
    if unknown or not names:
        raise DataError(f"--download {text!r}: give a comma-separated list of "
                        f"{', '.join(DOWNLOAD_SOURCES)}")
    return names


def download_gqa(data_dir: Path, *, scene_graphs_url: str = GQA_SCENE_GRAPHS_URL,
                 questions_url: str = GQA_QUESTIONS_URL,
                 progress: ProgressCallback | None = None) -> dict[str, Path]:
    """Fetch GQA's scene graphs (and its questions, unless `questions_url` is empty).

    Returns the train files by [source] key; the val files are extracted beside them.
    """
    urls = {"gqa_scene_graphs": scene_graphs_url, "gqa_questions": questions_url}
    return _fetch(data_dir, [(*entry, urls[entry[0]]) for entry in _GQA if urls[entry[0]]],
                  progress)


def download_vqa(data_dir: Path, *, questions_url: str = VQA_QUESTIONS_URL,
                 annotations_url: str = VQA_ANNOTATIONS_URL,
                 progress: ProgressCallback | None = None) -> dict[str, Path]:
    """Fetch VQAv2's train questions and annotations; returns them by [source] key."""
    urls = {"vqa_questions": questions_url, "vqa_annotations": annotations_url}
    return _fetch(data_dir, [(*entry, urls[entry[0]]) for entry in _VQA], progress)


def _fetch(data_dir: Path, entries: Sequence[tuple[str, str, str, tuple[str, ...], str]],
           progress: ProgressCallback | None) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for key, zip_name, member, others, url in entries:
        zip_path = download(DownloadSpec(key, url, zip_name), data_dir, progress=progress)
        found[key] = extract_members(zip_path, data_dir, (member, *others))[0]
    return found


def extract_members(zip_path: Path, data_dir: Path, members: Sequence[str]) -> list[Path]:
    """Extract `members` (found at any folder depth in the zip) straight into `data_dir`.

    An interrupted extraction leaves no half file at a final name; a whole one is kept.
    """
    data_dir = _writable_dir(Path(data_dir))
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as error:
        raise DataError(f"{zip_path}: not a zip file (perhaps an error page was saved); "
                        "delete it and download it again") from error
    with archive:
        by_name = {PurePosixPath(info.filename).name: info for info in archive.infolist()
                   if not info.is_dir()}
        infos = []
        for member in members:
            info = by_name.get(member)
            if info is None:
                raise DataError(f"{zip_path}: has no {member}; it is not the expected download, "
                                "delete it and download it again (or fix the URL in [download])")
            infos.append(info)
        paths = []
        for info in infos:
            # Flattened: the files land beside each other whatever folder the zip used.
            info.filename = PurePosixPath(info.filename).name
            paths.append(_extract_member(archive, zip_path, info, data_dir))
        return paths
