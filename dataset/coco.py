"""Streaming reader of the original COCO captions and instances JSON files."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import ijson
from ijson.common import ObjectBuilder

from visinstruct.dataset.errors import DataError
from visinstruct.dataset.records import Box, Image


def _json_backend() -> Any:
    """The C (yajl2) ijson backend when it is built, else ijson's default one."""
    try:
        return ijson.get_backend("yajl2_c")
    except ImportError:
        return ijson


JSON_BACKEND: Any = _json_backend()

_OPENERS = frozenset({"start_map", "start_array"})
_CLOSERS = frozenset({"end_map", "end_array"})

# Only these fields are ever built; everything else (segmentation polygons above all) is skipped.
_CAPTION_FIELDS = {
    "images": frozenset({"id", "file_name", "width", "height"}),
    "annotations": frozenset({"image_id", "caption"}),
}

# One shared float per 3-decimal value keeps 860K boxes small in memory.
_GRID = tuple(i / 1000 for i in range(1001))

_KIND_NAMES = {int: "an integer", str: "a string"}

_ImageRow = tuple[int, str, int, int]  # image id, file name, width, height
_BoxRow = tuple[int, float, float, float, float, bool]  # category id, x1, y1, x2, y2, crowd


def malformed_json_error(path: Path, error: Exception, position: int) -> DataError:
    """A DataError naming the file, roughly where parsing stopped, and the parser's complaint."""
    reason = str(error).split("\\n")[0].split("\n")[0].removeprefix("b'").removeprefix('b"')
    return DataError(f"{path}: malformed JSON before byte {position}: {reason}")


def read_coco(
    captions_path: Path, instances_path: Path | None = None, *, split: str = ""
) -> Iterator[Image]:
    """Index a captions file (and optionally its instances file), then yield one Image per image.

    Both files are read and checked before this returns, so a bad file raises here and not
    half-way through the caller's loop.
    """
    images, captions = _read_captions(Path(captions_path))
    boxes: dict[int, list[_BoxRow]] = {}
    names: dict[int, str] = {}
    if instances_path is not None:
        sizes = {row[0]: (row[2], row[3]) for row in images}
        boxes, names = _read_boxes(Path(instances_path), sizes)
    return _images(images, captions, boxes, names, split)


def _images(
    images: list[_ImageRow],
    captions: dict[int, list[str]],
    boxes: dict[int, list[_BoxRow]],
    names: dict[int, str],
    split: str,
) -> Iterator[Image]:
    """Yield the indexed images in captions-file order, freeing each one's data as it goes."""
    for image_id, file_name, width, height in images:
        image_boxes = tuple(
            Box(names[row[0]], (row[1], row[2], row[3], row[4]), row[5])
            for row in boxes.pop(image_id, ())
        )
        yield Image(
            image_id=image_id,
            file_name=file_name,
            width=width,
            height=height,
            captions=tuple(captions.pop(image_id, ())),
            boxes=image_boxes,
            split=split,
        )


def _read_captions(path: Path) -> tuple[list[_ImageRow], dict[int, list[str]]]:
    """Image rows in file order and each image's non-empty, stripped captions."""
    images: list[_ImageRow] = []
    captions: dict[int, list[str]] = defaultdict(list)
    seen_keys: set[str] = set()
    for key, item in _stream_arrays(path, _CAPTION_FIELDS, seen_keys):
        if key == "images":
            images.append(_image_row(path, item))
            continue
        if "caption" not in item:
            raise DataError(
                f"{path}: annotations have no 'caption': this is an instances file, "
                "give it as the instances file and the captions file as captions"
            )
        text = _field(path, item, "caption", str).strip()
        if text:
            captions[_field(path, item, "image_id", int)].append(text)
    _require_keys(path, seen_keys, ("images", "annotations"))
    known = {row[0] for row in images}
    if len(known) != len(images):
        raise DataError(f"{path}: an image id is listed twice in 'images'")
    strays = captions.keys() - known
    if strays:
        raise DataError(f"{path}: captions for image id {min(strays)}, which is not in 'images'")
    return images, captions


def _read_boxes(
    path: Path, sizes: dict[int, tuple[int, int]]
) -> tuple[dict[int, list[_BoxRow]], dict[int, str]]:
    """Each image's boxes in file order, and the category names by id.

    ijson's C builder makes one annotation at a time (polygon included) and drops it once
    its box is taken, so memory holds one polygon, never the file's; it is several times
    faster than skipping the polygons event by event in Python. The categories come last
    in the real files, so they are read in a second pass.
    """
    boxes: dict[int, list[_BoxRow]] = defaultdict(list)
    for item in _items(path, "annotations.item"):
        if not isinstance(item, dict):
            raise DataError(f"{path}: an entry of 'annotations' is not an object")
        if "bbox" not in item:
            raise DataError(
                f"{path}: annotations have no 'bbox': this is a captions file, "
                "give an instances_*.json file as the instances file"
            )
        image_id = _field(path, item, "image_id", int)
        boxes[image_id].append(_box_row(path, item, image_id, sizes))
    names: dict[int, str] = {}
    for item in _items(path, "categories.item"):
        if not isinstance(item, dict):
            raise DataError(f"{path}: an entry of 'categories' is not an object")
        names[_field(path, item, "id", int)] = _field(path, item, "name", str)
    if not names:
        raise DataError(
            f"{path}: no 'categories' list: this is not an instances file, "
            "give an instances_*.json file as the instances file"
        )
    unknown = {row[0] for rows in boxes.values() for row in rows} - names.keys()
    if unknown:
        raise DataError(f"{path}: a box has category id {min(unknown)}, not in 'categories'")
    return boxes, names


def _items(path: Path, prefix: str) -> Iterator[Any]:
    """Stream the values at `prefix` (e.g. "annotations.item"), translating parse errors."""
    stream = _open(path)
    with stream:
        try:
            head = stream.read(4096).lstrip()
            stream.seek(0)
            if head and not head.startswith(b"{"):
                raise DataError(f"{path}: not a JSON object: not a COCO annotations file")
            yield from JSON_BACKEND.items(stream, prefix, use_float=True)
        except ijson.JSONError as error:
            raise malformed_json_error(path, error, stream.tell()) from None


def _box_row(
    path: Path, item: dict[str, Any], image_id: int, sizes: dict[int, tuple[int, int]]
) -> _BoxRow:
    """One annotation as a compact row with its box normalised to the image size."""
    size = sizes.get(image_id)
    if size is None:
        raise DataError(
            f"{path}: boxes for image id {image_id}, which is not in the captions file: "
            "give the captions and instances files of the same split"
        )
    width, height = size
    if width <= 0 or height <= 0:
        raise DataError(f"{path}: image id {image_id} has boxes but a zero size ({width}x{height})")
    bbox = item["bbox"]
    if (
        not isinstance(bbox, list)
        or len(bbox) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
    ):
        raise DataError(f"{path}: a box of image id {image_id} is not four numbers: {bbox!r}")
    x, y, w, h = bbox
    return (
        _field(path, item, "category_id", int),
        *normalised_box(x, y, w, h, width, height),
        item.get("iscrowd", 0) == 1,
    )


def normalised_box(
    x: float, y: float, w: float, h: float, width: int, height: int
) -> tuple[float, float, float, float]:
    """A pixel [x, y, w, h] box as [x1, y1, x2, y2] fractions of the image size (3 decimals)."""
    return (_unit(x / width), _unit(y / height), _unit((x + w) / width), _unit((y + h) / height))


def _unit(value: float) -> float:
    """Clamp to 0..1 and round to 3 decimals."""
    return _GRID[round(round(min(max(value, 0.0), 1.0), 3) * 1000)]


def _image_row(path: Path, item: dict[str, Any]) -> _ImageRow:
    """One 'images' entry as (id, file name, width, height)."""
    return (
        _field(path, item, "id", int),
        _field(path, item, "file_name", str),
        _field(path, item, "width", int),
        _field(path, item, "height", int),
    )


def _field(path: Path, item: dict[str, Any], name: str, kind: type) -> Any:
    """item[name], checked to be of the given kind."""
    value = item.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(f"{path}: an entry has {name}={value!r}, expected {_KIND_NAMES[kind]}")
    return value


def _require_keys(path: Path, seen_keys: set[str], keys: tuple[str, ...]) -> None:
    """Raise when a top-level list the file must have is missing."""
    for key in keys:
        if key not in seen_keys:
            raise DataError(f"{path}: no '{key}' list: not a COCO captions file")


def _stream_arrays(
    path: Path, fields: dict[str, frozenset[str]], seen_keys: set[str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (top-level key, object) for each object of the wanted top-level lists.

    Only the wanted fields of each object are built; every other value is skipped event by
    event, so a 448 MB instances file never materialises its polygons. `seen_keys` collects
    the top-level keys found, in any order.
    """
    stream = _open(path)
    with stream:
        try:
            events = iter(JSON_BACKEND.basic_parse(stream, use_float=True))
            if next(events, (None, None))[0] != "start_map":
                raise DataError(f"{path}: not a JSON object: not a COCO annotations file")
            yield from _top_level(path, events, fields, seen_keys)
            for _ in events:  # the parser reports trailing garbage only when drained
                pass
        except ijson.JSONError as error:
            raise malformed_json_error(path, error, stream.tell()) from None


def _open(path: Path) -> IO[bytes]:
    """Open a data file for binary reading, as a DataError when that fails."""
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as error:
        raise DataError(f"{path}: cannot be read: {error.strerror}") from None


def _top_level(
    path: Path,
    events: Iterator[tuple[str, Any]],
    fields: dict[str, frozenset[str]],
    seen_keys: set[str],
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Walk the top-level object's keys, streaming the wanted lists and skipping the rest."""
    for event, key in events:
        if event == "end_map":
            return
        seen_keys.add(key)
        wanted = fields.get(key)
        if wanted is None:
            _skip(events)
            continue
        if next(events)[0] != "start_array":
            raise DataError(f"{path}: '{key}' is not a list")
        for event, _ in events:
            if event == "end_array":
                break
            if event != "start_map":
                raise DataError(f"{path}: an entry of '{key}' is not an object")
            yield key, _object(events, wanted)


def _object(events: Iterator[tuple[str, Any]], wanted: frozenset[str]) -> dict[str, Any]:
    """Build the wanted fields of the object whose start_map was just read."""
    item: dict[str, Any] = {}
    for event, name in events:
        if event == "end_map":
            break
        if name in wanted:
            item[name] = _build(events)
        else:
            _skip(events)
    return item


def _build(events: Iterator[tuple[str, Any]]) -> Any:
    """Build the next JSON value."""
    event, value = next(events)
    if event not in _OPENERS:
        return value
    builder = ObjectBuilder()
    builder.event(event, value)
    depth = 1
    for event, value in events:
        builder.event(event, value)
        if event in _OPENERS:
            depth += 1
        elif event in _CLOSERS:
            depth -= 1
            if not depth:
                break
    return builder.value


def _skip(events: Iterator[tuple[str, Any]]) -> None:
    """Consume the next JSON value without building it."""
    event, _ = next(events)
    if event not in _OPENERS:
        return
    depth = 1
    for event, _ in events:
        if event == "number":  # the polygons' bulk: keep the hot path to one comparison
            continue
        if event in _OPENERS:
            depth += 1
        elif event in _CLOSERS:
            depth -= 1
            if not depth:
                return
