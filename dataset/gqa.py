"""Streaming readers of GQA's scene graphs and question files (one scene or question at a time)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ijson

from visinstruct.dataset.coco import (
    JSON_BACKEND,
    malformed_json_error,
    normalised_box,
    open_data_file,
    require_json_object,
)
from visinstruct.dataset.errors import DataError
from visinstruct.dataset.records import Fact, Relation, SceneObject


@dataclass(frozen=True)
class GqaScene:
    """One GQA image: its size, optional place and weather, and its scene graph."""

    image_id: str
    width: int
    height: int
    objects: tuple[SceneObject, ...]
    relations: tuple[Relation, ...]
    location: str = ""
    weather: str = ""


def read_scene_graphs(path: Path) -> Iterator[GqaScene]:
    """Stream `{imageId: scene}` from a `*_sceneGraphs.json` file, checked scene by scene.

    The first character is checked before this returns, so a file of the wrong kind fails
    here; a malformed scene later raises DataError from the iterator.
    """
    path = Path(path)
    require_json_object(path, "a GQA scene graphs file (train_sceneGraphs.json)")
    return _scenes(path)


def read_gqa_questions(path: Path) -> Iterator[Fact]:
    """Stream the question-answer facts of a GQA questions file, or of a folder of its parts.

    `*_balanced_questions.json` is one file; `*_all_questions` comes as a folder of numbered
    parts, read in their numeric order. Facts come in file order, keyed by GQA image id.
    """
    path = Path(path)
    parts = _question_parts(path)
    for part in parts:
        require_json_object(part, "a GQA questions file (val_balanced_questions.json)")
    return _facts(parts)


def _question_parts(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    parts = sorted(path.glob("*.json"), key=_part_order)
    if not parts:
        raise DataError(f"{path}: a folder with no *.json question files")
    return parts


def _part_order(path: Path) -> tuple[int, str]:
    digits = "".join(c for c in path.stem.rsplit("_", 1)[-1] if c.isdigit())
    return (int(digits) if digits else -1, path.name)


def _top_items(path: Path) -> Iterator[tuple[str, Any]]:
    """(key, value) of the file's top-level JSON object, one at a time; bad JSON names the file."""
    with open_data_file(path) as stream:
        try:
            for key, body in JSON_BACKEND.kvitems(stream, "", use_float=True):
                yield str(key), body
        except ijson.JSONError as error:
            raise malformed_json_error(path, error, stream.tell()) from None


def _scenes(path: Path) -> Iterator[GqaScene]:
    for image_id, body in _top_items(path):
        yield _scene(path, image_id, body)


def _scene(path: Path, image_id: str, body: Any) -> GqaScene:
    where = f"{path}: scene {image_id!r}"
    if not isinstance(body, dict):
        raise DataError(f"{where} is not an object: not a GQA scene graphs file")
    width, height = _int(body, "width", where), _int(body, "height", where)
    if width <= 0 or height <= 0:
        raise DataError(f"{where} has a zero size ({width}x{height})")
    raw_objects = body.get("objects")
    if not isinstance(raw_objects, dict):
        raise DataError(f"{where} has no 'objects' object: not a GQA scene graphs file")
    index = {key: n for n, key in enumerate(raw_objects)}
    objects: list[SceneObject] = []
    relations: list[Relation] = []
    for n, (key, item) in enumerate(raw_objects.items()):
        objects.append(_object(item, str(key), width, height, f"{where} object {key!r}"))
        for relation in item.get("relations") or ():
            if not (isinstance(relation, dict) and isinstance(relation.get("name"), str)):
                raise DataError(f"{where} object {key!r} has a relation without a 'name'")
            target = index.get(str(relation.get("object")))
            # A relation to an object outside the graph names nothing the prompt can show.
            if target is not None:
                relations.append(Relation(n, relation["name"], target))
    return GqaScene(image_id, width, height, tuple(objects), tuple(relations),
                    _text(body.get("location")), _text(body.get("weather")))


def _object(item: Any, key: str, width: int, height: int, where: str) -> SceneObject:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise DataError(f"{where} has no 'name': not a GQA scene graphs file")
    box: tuple[Any, ...] = (item.get("x"), item.get("y"), item.get("w"), item.get("h"))
    # One pass with exact type checks (a bool is no number): this runs for every object.
    if not all(type(v) is float or type(v) is int for v in box):
        for name in ("x", "y", "w", "h"):
            _number(item, name, where)
    x, y, w, h = box
    attributes = item.get("attributes") or []
    if not isinstance(attributes, list) or not all(isinstance(a, str) for a in attributes):
        raise DataError(f"{where}: 'attributes' must be a list of strings")
    return SceneObject(key, item["name"].strip(), normalised_box(x, y, w, h, width, height),
                       tuple(a.strip() for a in attributes if a.strip()))


def _facts(parts: list[Path]) -> Iterator[Fact]:
    for part in parts:
        for question_id, body in _top_items(part):
            yield _fact(part, question_id, body)


def _fact(path: Path, question_id: str, body: Any) -> Fact:
    where = f"{path}: question {question_id!r}"
    if not isinstance(body, dict):
        raise DataError(f"{where} is not an object: not a GQA questions file")
    values = []
    for key in ("imageId", "question", "answer"):
        value = body.get(key)
        if not isinstance(value, str):
            raise DataError(f"{where} has {key}={value!r}, expected a string: "
                            "not a GQA questions file")
        values.append(value)
    return Fact(values[0], question_id, values[1].strip(), values[2].strip(), "gqa")


def _int(body: dict[str, Any], key: str, where: str) -> int:
    value = body.get(key)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DataError(f"{where} has {key}={value!r}, expected an integer")
    return value


def _number(body: dict[str, Any], key: str, where: str) -> float:
    value = body.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise DataError(f"{where} has {key}={value!r}, expected a number")
    return float(value)


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


