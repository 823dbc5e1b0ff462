"""Write kept conversations as mix665k-shaped LLaVA JSON, JSON Lines, or a Hugging Face dataset."""

from __future__ import annotations

import io
import itertools
import json
import os
import secrets
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO

from visinstruct.core.errors import ExportError
from visinstruct.core.export.validate import IMAGE_TOKEN, check_record
from visinstruct.core.records import ALL_TASKS, Pair
from visinstruct.core.sanitize.clean import clean_pair_text
from visinstruct.dataset.mix_parts import COCO_PREFIX, GQA_PREFIX

FORMATS: tuple[str, ...] = ("llava", "jsonl", "hf")
# `source` names where a record came from (a dataset, or this project); `provenance` holds
# the rest of a jsonl record's fields as JSON text, so every row has the same columns.
HF_COLUMNS: tuple[str, ...] = ("id", "image", "conversations", "task", "source", "provenance")
PROJECT_SOURCE = "visinstruct"  # the `source` of the records this project made
_RESERVED_KEYS = frozenset({"id", "image", "conversations", "task", "source"})
# Files a `save_to_disk` folder holds; an existing folder is only replaced if it has one.
_HF_MARKERS = ("state.json", "dataset_info.json", "dataset_dict.json")
_WRITE_BUFFER = 1 << 20
STDOUT = "-"  # `--out -`: the export goes to standard output


def coco_image_path(image_id: int) -> str:
    """The mix665k image path of a COCO train2017 image."""
    return f"{COCO_PREFIX}{image_id:012d}.jpg"


def gqa_image_path(gqa_id: str) -> str:
    """The mix665k image path of a GQA image."""
    return f"{GQA_PREFIX}{gqa_id}.jpg"


@dataclass(frozen=True)
class ExportItem:
    """One kept conversation to export; `meta` (prompt version, model, scores) is for jsonl.

    A GQA image's record has its GQA id (`gqa_id`) as id and `gqa/images/<id>.jpg` as
    image, as mix665k does; a COCO image's has the 12-digit COCO id.
    """

    image_id: int
    task: str
    pairs: tuple[Pair, ...]
    image_path: str = ""
    meta: dict[str, Any] = field(default_factory=dict, hash=False)
    gqa_id: str = ""

    def __post_init__(self) -> None:
        if not self.image_path:
            path = gqa_image_path(self.gqa_id) if self.gqa_id else coco_image_path(self.image_id)
            object.__setattr__(self, "image_path", path)


@dataclass(frozen=True)
class OutRecord:
    """One validated record on its way out: `record` is what llava writes, exactly;
    `fields` what jsonl adds beside it (task, source, provenance); `pairs` its pair count."""

    record: dict[str, Any]
    fields: dict[str, Any]
    pairs: int


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote: how many records and pairs, and where."""

    records: int
    pairs: int
    path: Path


class RecordRejected(ExportError):
    """A record broke a validation rule, so nothing was written; `index` is 0-based."""

    title = "Invalid record"

    def __init__(self, message: str, *, index: int, record_id: str, rule: str) -> None:
        super().__init__(message)
        self.index = index
        self.record_id = record_id
        self.rule = rule


def to_llava_record(item: ExportItem) -> dict[str, Any]:
    """The mix665k record of one item: `<image>` opens the first question, turns alternate."""
    conversations: list[dict[str, Any]] = []
    # Cleaned again here: a store written before pairs were cleaned may hold `<image>` or
    # control characters, which would make every export of it fail validation.
    pairs = [(clean_pair_text(p.question), clean_pair_text(p.answer)) for p in item.pairs]
    for position, (question, answer) in enumerate(pairs):
        if position == 0:
            question = f"{IMAGE_TOKEN}\n{question}"
        conversations.append({"from": "human", "value": question})
        conversations.append({"from": "gpt", "value": answer})
    return {
        "id": item.gqa_id or _record_id(item.image_id),
        "image": item.image_path,
        "conversations": conversations,
    }


def export(items: Iterable[ExportItem], fmt: str, out: Path | str) -> ExportSummary:
    """Validate and write every item to `out` atomically; on any error `out` is left as it was."""
    return write_records(our_records(items), fmt, out)


def write_records(rows: Iterable[OutRecord], fmt: str, out: Path | str) -> ExportSummary:
    """Write checked records to `out` (or stdout) atomically; on any error `out` is unchanged."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    if str(out) == STDOUT:
        if fmt == "hf":
            raise ExportError("--out -: the hf format writes a folder; give a folder path")
        return _write_to_stream(rows, fmt, sys.stdout)
    given = Path(out)
    out = writable_target(given)
    _prepare_parent(out)
    if fmt == "hf":
        summary = _export_hf(rows, out)
        return ExportSummary(summary.records, summary.pairs, given)
    if out.is_dir():
        raise ExportError(f"{given}: is a directory; give the path of a file (inside it, say)")
    with _staged_file(out) as sink:
        records, pairs = _write(rows, fmt, sink)
    return ExportSummary(records, pairs, given)


def export_to_stream(items: Iterable[ExportItem], fmt: str, stream: TextIO) -> ExportSummary:
    """Validate every item, then write them all to `stream`; a bad record writes nothing."""
    return _write_to_stream(our_records(items), fmt, stream)


def _write_to_stream(rows: Iterable[OutRecord], fmt: str, stream: TextIO) -> ExportSummary:
    # Spooled first, so a record rejected halfway leaves no half-written JSON on the stream.
    with tempfile.TemporaryFile() as spool:
        sink = io.TextIOWrapper(spool, encoding="utf-8", newline="\n")
        records, pairs = _write(rows, fmt, sink)
        sink.flush()
        spool.seek(0)
        binary = getattr(stream, "buffer", None)
        stream.flush()
        if binary is not None:
            shutil.copyfileobj(spool, binary)
            binary.flush()
        else:
            stream.write(spool.read().decode("utf-8"))
            stream.flush()
        sink.detach()
    return ExportSummary(records, pairs, Path(STDOUT))


def write_text_file(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically (a staged file renamed); special files refused."""
    target = writable_target(path, "")
    _prepare_parent(target)
    if target.is_dir():
        raise ExportError(f"{path}: is a directory; give the path of a file")
    with _staged_file(target) as sink:
        sink.write(text)
    return path


def writable_target(out: Path, stdout_hint: str = ", or --out - for stdout") -> Path:
    """Where a file written to `out` really goes: a symlink's target; special files refused."""
    target = Path(os.path.realpath(out)) if out.is_symlink() else out
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return target
    except OSError as error:
        raise ExportError(f"{out}: cannot use this path ({error.strerror or error})") from error
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return target
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
            "a socket" if stat.S_ISSOCK(mode) else "a special file")
    raise ExportError(
        f"{out}: is {kind}, not a regular file; give a file path{stdout_hint}"
    )


def _write(rows: Iterable[OutRecord], fmt: str, sink: IO[str]) -> tuple[int, int]:
    return _write_llava(rows, sink) if fmt == "llava" else _write_jsonl(rows, sink)


def _record_id(image_id: int) -> str:
    return f"{image_id:012d}" if isinstance(image_id, int) else str(image_id)


def our_records(items: Iterable[ExportItem]) -> Iterator[OutRecord]:
    """Each item's record, checked by the strict rules; RecordRejected names the first bad one."""
    for index, item in enumerate(items):
        record = to_llava_record(item)
        violations = check_record(record)
        if violations:
            first = violations[0]
            raise _rejected(index, record, first.rule, first.detail)
        if item.task not in ALL_TASKS:
            detail = f"task must be one of {', '.join(ALL_TASKS)}, got {item.task!r}"
            raise _rejected(index, record, "task", detail)
        clashing = sorted(_RESERVED_KEYS & item.meta.keys())
        if clashing:
            raise _rejected(
                index, record, "meta-keys", f"meta must not use the keys {', '.join(clashing)}"
            )
        fields = {"task": item.task, "source": PROJECT_SOURCE, **item.meta}
        yield OutRecord(record, fields, len(item.pairs))


def _rejected(index: int, record: dict[str, Any], rule: str, detail: str) -> RecordRejected:
    record_id = str(record.get("id", ""))
    return RecordRejected(
        f"record {index} (id {record_id}) breaks rule {rule}: {detail}; "
        "nothing was written: fix or drop that conversation and export again",
        index=index,
        record_id=record_id,
        rule=rule,
    )


def _write_llava(rows: Iterable[OutRecord], sink: IO[str]) -> tuple[int, int]:
    # The same separators json.dump uses for a list, so the bytes equal json.dump(all_records).
    encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
    records = pairs = 0
    sink.write("[")
    for row in rows:
        if records:
            sink.write(", ")
        sink.write(encode(row.record))
        records += 1
        pairs += row.pairs
    sink.write("]")
    return records, pairs


def _write_jsonl(rows: Iterable[OutRecord], sink: IO[str]) -> tuple[int, int]:
    encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
    records = pairs = 0
    for row in rows:
        try:
            line = encode({**row.record, **row.fields})
        except (TypeError, ValueError) as error:
            raise _rejected(
                records, row.record, "meta-json", f"meta is not plain JSON ({error})"
            ) from error
        sink.write(line)
        sink.write("\n")
        records += 1
        pairs += row.pairs
    return records, pairs


def hf_row(row: OutRecord) -> dict[str, Any]:
    """The Hugging Face row of a record: the fixed columns, the other fields as JSON text."""
    record, fields = row.record, row.fields
    rest = {k: v for k, v in {**record, **fields}.items() if k not in HF_COLUMNS}
    return {
        "id": str(record.get("id", "")),
        "image": str(record.get("image") or ""),
        "conversations": record["conversations"],
        "task": str(fields.get("task", "")),
        "source": str(fields.get("source", "")),
        "provenance": json.dumps(rest, ensure_ascii=False, allow_nan=False) if rest else "",
    }


def _prepare_parent(out: Path) -> None:
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as error:
        raise ExportError(
            f"{out}: cannot create folder {parent}: a file of that name is in the way"
        ) from error
    except OSError as error:
        raise ExportError(
            f"{out}: cannot create folder {parent} ({error.strerror or error})"
        ) from error
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"{out}: folder {parent} is not writable; choose another output path")


def _staging_name(out: Path, suffix: str) -> Path:
    # A dot-name beside `out`, so os.replace stays on one filesystem and stays atomic.
    return out.with_name(f".{out.name}.{secrets.token_hex(4)}.{suffix}")


@contextmanager
def _staged_file(out: Path) -> Iterator[IO[str]]:
    """A text file beside `out` that replaces it only if the block finishes; else it is removed."""
    while True:
        staged = _staging_name(out, "tmp")
        try:
            # 0o666 before the umask: the export gets the same mode a plain open() would give.
            descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
        except OSError as error:
            raise ExportError(
                f"{out}: cannot write there ({error.strerror or error}); choose another output path"
            ) from error
    try:
        with open(descriptor, "w", encoding="utf-8", newline="\n", buffering=_WRITE_BUFFER) as sink:
            yield sink
            sink.flush()
            # On disk before the rename, so a crash can never leave a half-written export.
            os.fsync(sink.fileno())
        os.replace(staged, out)
    except BaseException as error:
        staged.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise ExportError(
                f"{out}: writing failed ({error.strerror or error}); nothing was changed"
            ) from error
        raise


def _export_hf(items: Iterable[OutRecord], out: Path) -> ExportSummary:
    """Save a `datasets.Dataset` with `save_to_disk`, built by a generator so rows stream."""
    if out.exists() and not _replaceable_dataset_dir(out):
        raise ExportError(
            f"{out}: exists and is not a saved dataset; choose a new output path or remove it"
        )
    import datasets  # slow to import; only this format needs it

    counts = {"records": 0, "pairs": 0}

    def rows() -> Iterator[dict[str, Any]]:
        for row in items:
            counts["records"] += 1
            counts["pairs"] += row.pairs
            yield hf_row(row)

    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "image": datasets.Value("string"),
            "conversations": [
                {"from": datasets.Value("string"), "value": datasets.Value("string")}
            ],
            "task": datasets.Value("string"),
            "source": datasets.Value("string"),
            "provenance": datasets.Value("string"),
        }
    )
    staging = _staging_name(out, "tmp")
    try:
        staging.mkdir()
    except OSError as error:
        raise ExportError(
            f"{out}: cannot write there ({error.strerror or error}); choose another output path"
        ) from error
    try:
        with _quiet_progress(datasets):
            stream = rows()
            first = next(stream, None)
            if first is None:
                # Nothing kept: an empty dataset with the same columns (from_generator refuses
                # a generator that yields nothing).
                dataset = datasets.Dataset.from_dict({name: [] for name in features},
                                                     features=features)
            else:
                # A fresh fingerprint and a private cache: no hashing of `items`, no stale hit.
                dataset = datasets.Dataset.from_generator(
                    lambda: itertools.chain((first,), stream),
                    features=features,
                    cache_dir=str(staging / "cache"),
                    fingerprint=secrets.token_hex(8),
                )
            # One shard at least: an empty dataset saved with none cannot be loaded again.
            dataset.save_to_disk(str(staging / "dataset"),
                                 num_shards=None if first is not None else 1)
        del dataset
        _swap_in_dir(staging / "dataset", out)
    except Exception as error:
        cause = _export_error_within(error)
        if cause is not None and cause is not error:
            raise cause from None
        if isinstance(error, OSError):
            raise ExportError(
                f"{out}: writing failed ({error.strerror or error}); nothing was changed"
            ) from error
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportSummary(counts["records"], counts["pairs"], out)


@contextmanager
def _quiet_progress(datasets: Any) -> Iterator[None]:
    # The caller owns progress display; datasets' own bars would only clutter stderr.
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _replaceable_dataset_dir(path: Path) -> bool:
    # Never delete a folder we did not make: only an empty one or an earlier save_to_disk.
    return path.is_dir() and (
        not any(path.iterdir()) or any((path / m).exists() for m in _HF_MARKERS)
    )


def _swap_in_dir(new: Path, out: Path) -> None:
    """Put folder `new` at `out`; an old dataset there is moved aside first and removed after."""
    if not out.exists():
        os.replace(new, out)
        return
    old = _staging_name(out, "old")
    os.replace(out, old)
    try:
        os.replace(new, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _export_error_within(error: BaseException) -> ExportError | None:
    """The ExportError that `datasets` wrapped (it re-raises generator errors as its own)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ExportError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
