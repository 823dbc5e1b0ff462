"""Resumable, verified downloads of the COCO annotations and mix665k, and extraction of the
annotations."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from visinstruct.dataset.errors import DataError, DownloadError

COCO_ANNOTATIONS_URL = "http://images.cocodataset.org/annotations/annotations_trainval2017.zip"
MIX665K_URL = (
    "https://huggingface.co/datasets/liuhaotian/LLaVA-Instruct-150K/resolve/main/"
    "llava_v1_5_mix665k.json"
)
ANNOTATION_MEMBERS: tuple[str, ...] = (
    "annotations/captions_train2017.json",
    "annotations/instances_train2017.json",
    "annotations/captions_val2017.json",
    "annotations/instances_val2017.json",
)

ProgressCallback = Callable[[str, int, int | None], None]
"""Called as `progress(name, done_bytes, total_bytes)`; total is None when the server hides it."""

_CHUNK_BYTES = 256 * 1024
_MAX_BACKOFF_SECONDS = 30.0
_RETRIED_HTTP_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_USER_AGENT = "visinstruct-download/0.1"


@dataclass(frozen=True)
class DownloadSpec:
    """One file to fetch: where from, the name it gets in the data dir, and what it must be."""

    name: str
    url: str
    dest_name: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None


def default_specs(
    coco_annotations_url: str = COCO_ANNOTATIONS_URL, mix665k_url: str = MIX665K_URL
) -> tuple[DownloadSpec, ...]:
    """The two source files `prepare --download` fetches, with the URLs from `[download]`."""
    # Sizes and checksums stay None: a wrong guess would reject a good file forever.
    return (
        DownloadSpec("coco_annotations", coco_annotations_url, "annotations_trainval2017.zip"),
        DownloadSpec("mix665k", mix665k_url, "llava_v1_5_mix665k.json"),
    )


DEFAULT_SPECS: tuple[DownloadSpec, ...] = default_specs()


class _Interrupted(Exception):
    """A transfer stopped early in a way worth retrying from the bytes already held."""


class _PartTooLong(Exception):
    """The `.part` file holds more than the server has, so it cannot be a prefix of it."""


def download(
    spec: DownloadSpec,
    data_dir: Path,
    *,
    progress: ProgressCallback | None = None,
    retries: int = 5,
    timeout: float = 60,
    backoff: float = 1.0,
) -> Path:
    """Fetch `spec` into `data_dir`, resuming a `<dest>.part`, and return the verified final path.

    `retries` counts consecutive attempts that brought no new bytes; `backoff` is the first
    wait in seconds, doubled after each failure.
    """
    data_dir = _writable_dir(Path(data_dir))
    final_path = data_dir / spec.dest_name
    if final_path.is_file() and _is_complete(final_path, spec):
        held = final_path.stat().st_size
        if progress is not None:
            progress(spec.name, held, held)
        return final_path
    part_path = final_path.with_name(final_path.name + ".part")
    failures = 0
    while True:
        held_before = _size_of(part_path)
        try:
            server_total = _fetch_into(spec, part_path, progress, timeout)
            break
        except _PartTooLong:
            part_path.unlink(missing_ok=True)
            continue
        except (_Interrupted, http.client.HTTPException, ConnectionError, TimeoutError,
                urllib.error.URLError) as error:
            failures = 1 if _size_of(part_path) > held_before else failures + 1
            if failures > retries:
                kept = _size_of(part_path)
                fix = (
                    f"{kept} bytes kept in {part_path}, run again to resume"
                    if kept
                    else "check the URL and the network, then run again"
                )
                raise DownloadError(
                    f"{spec.name}: download from {spec.url} failed ({_describe(error)}); {fix}"
                ) from error
            time.sleep(min(backoff * 2 ** (failures - 1), _MAX_BACKOFF_SECONDS))
        except OSError as error:
            raise DownloadError(
                f"{part_path}: cannot write the download ({error.strerror or error}); "
                "free some space or choose a writable data directory"
            ) from error
    _verify_part(spec, part_path, server_total)
    os.replace(part_path, final_path)
    if progress is not None:
        whole = final_path.stat().st_size
        progress(spec.name, whole, whole)
    return final_path


def download_all(
    specs: Iterable[DownloadSpec],
    data_dir: Path,
    *,
    progress: ProgressCallback | None = None,
    retries: int = 5,
    timeout: float = 60,
) -> list[Path]:
    """Download each spec in turn and return their final paths in the same order."""
    return [
        download(spec, data_dir, progress=progress, retries=retries, timeout=timeout)
        for spec in specs
    ]


def extract_annotations(
    zip_path: Path, data_dir: Path, members: Sequence[str] = ANNOTATION_MEMBERS
) -> list[Path]:
    """Extract `members` of the COCO annotations zip under `data_dir`, keeping their zip paths.

    Every member is checked before anything is written, and each is streamed to a temp name
    then renamed, so an interrupted run never leaves a half file at the final name.
    """
    zip_path = Path(zip_path)
    data_dir = _writable_dir(Path(data_dir))
    if not zip_path.is_file():
        raise DataError(f"{zip_path}: the annotations zip does not exist; run `prepare --download`")
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as error:
        raise DataError(
            f"{zip_path}: not a zip file (perhaps an error page was saved); "
            "delete it and download it again"
        ) from error
    with archive:
        infos = [_member_info(archive, zip_path, member) for member in members]
        return [_extract_member(archive, zip_path, info, data_dir) for info in infos]


def download_sources(
    data_dir: Path,
    *,
    coco_annotations_url: str = COCO_ANNOTATIONS_URL,
    mix665k_url: str = MIX665K_URL,
    progress: ProgressCallback | None = None,
) -> list[Path]:
    """Download both sources and extract the annotations; return the annotation and mix665k
    paths."""
    zip_path, mix665k_path = download_all(
        default_specs(coco_annotations_url, mix665k_url), data_dir, progress=progress
    )
    return [*extract_annotations(zip_path, data_dir), mix665k_path]


def _fetch_into(
    spec: DownloadSpec, part_path: Path, progress: ProgressCallback | None, timeout: float
) -> int | None:
    """Make one request, append or rewrite `part_path`, and return the server's total size."""
    held = _size_of(part_path)
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if held:
        headers["Range"] = f"bytes={held}-"
    request = urllib.request.Request(spec.url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        try:
            return _handle_http_error(spec, error, held)
        finally:
            error.close()
    with response:
        if response.status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != held:
                # The server sent a different slice than asked; the safe way on is from zero.
                part_path.unlink(missing_ok=True)
                raise _Interrupted(f"server resumed at byte {start}, not {held}")
            mode = "ab"
        elif response.status == 200:
            held, mode = 0, "wb"
            total = _int_header(response.headers.get("Content-Length"))
        else:
            raise DownloadError(
                f"{spec.name}: {spec.url} answered HTTP {response.status}, expected 200 or 206; "
                "check the URL in the [download] config"
            )
        if spec.size is not None and total is not None and total != spec.size:
            raise DownloadError(
                f"{spec.name}: {spec.url} has {total} bytes but {spec.size} were expected; "
                "check the URL in the [download] config"
            )
        body_length = _int_header(response.headers.get("Content-Length"))
        expected_end = held + body_length if body_length is not None else total
        done = held
        with open(part_path, mode) as sink:
            if progress is not None:
                progress(spec.name, done, total)
            while chunk := response.read(_CHUNK_BYTES):
                sink.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(spec.name, done, total)
        # http.client returns b"" at an early close instead of raising, so check the count.
        if expected_end is not None and done < expected_end:
            raise _Interrupted(f"connection closed after {done} of {expected_end} bytes")
        return total


def _handle_http_error(spec: DownloadSpec, error: urllib.error.HTTPError, held: int) -> int | None:
    """Turn a non-2xx answer into a finished transfer (416 on a whole part) or an error."""
    if error.code == 416 and held:
        _, total = _parse_content_range(error.headers.get("Content-Range"))
        if total is not None and total < held:
            raise _PartTooLong()
        return total
    if error.code in _RETRIED_HTTP_STATUSES:
        raise _Interrupted(f"HTTP {error.code} {error.reason}")
    raise DownloadError(
        f"{spec.name}: {spec.url} answered HTTP {error.code} {error.reason}; "
        "check the URL in the [download] config"
    )


def _verify_part(spec: DownloadSpec, part_path: Path, server_total: int | None) -> None:
    """Raise DownloadError (and drop the useless `.part`) unless it has the right size and
    digest."""
    expected_size = spec.size if spec.size is not None else server_total
    held = _size_of(part_path)
    problem = None
    if expected_size is not None and held != expected_size:
        problem = f"has {held} bytes, expected {expected_size}"
    else:
        for algorithm, expected in (("sha256", spec.sha256), ("md5", spec.md5)):
            if expected is not None:
                actual = _digest(part_path, algorithm)
                if actual != expected.lower():
                    problem = f"{algorithm} is {actual}, expected {expected.lower()}"
                    break
    if problem is not None:
        # A finished transfer with wrong bytes cannot be resumed into a right one.
        part_path.unlink(missing_ok=True)
        raise DownloadError(
            f"{spec.name}: download from {spec.url} is corrupt ({problem}); "
            "run again to fetch it anew, or fix the URL in the [download] config"
        )


def _is_complete(path: Path, spec: DownloadSpec) -> bool:
    """Whether a file at the final name already matches what `spec` knows about it."""
    # Only verified files are ever renamed to the final name, so with nothing to compare it is
    # whole.
    if spec.size is not None and path.stat().st_size != spec.size:
        return False
    if spec.sha256 is not None and _digest(path, "sha256") != spec.sha256.lower():
        return False
    return spec.md5 is None or _digest(path, "md5") == spec.md5.lower()


def _member_info(archive: zipfile.ZipFile, zip_path: Path, member: str) -> zipfile.ZipInfo:
    """Look up `member`, refusing names that would land outside the data directory."""
    member_path = PurePosixPath(member)
    if member_path.is_absolute() or ".." in member_path.parts:
        raise DataError(f"{zip_path}: member name {member!r} is not a plain relative path")
    try:
        return archive.getinfo(member)
    except KeyError as error:
        raise DataError(
            f"{zip_path}: has no {member}; it is not the COCO 2017 annotations zip, "
            "delete it and download it again"
        ) from error


def _extract_member(
    archive: zipfile.ZipFile, zip_path: Path, info: zipfile.ZipInfo, data_dir: Path
) -> Path:
    """Stream one member to a temp file beside its target and rename it into place."""
    target = data_dir / PurePosixPath(info.filename)
    if target.is_file() and target.stat().st_size == info.file_size:
        return target
    temp_path = target.with_name(f".{target.name}.extracting")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(temp_path, "wb") as sink, archive.open(info) as source:
            shutil.copyfileobj(source, sink, _CHUNK_BYTES)
        os.replace(temp_path, target)
    except (zipfile.BadZipFile, EOFError) as error:
        temp_path.unlink(missing_ok=True)
        raise DataError(
            f"{zip_path}: {info.filename} is damaged ({error}); "
            "delete the zip and download it again"
        ) from error
    except OSError as error:
        temp_path.unlink(missing_ok=True)
        raise DataError(
            f"{target}: cannot write the extracted file ({error.strerror or error}); "
            "free some space or choose a writable data directory"
        ) from error
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return target


def _writable_dir(data_dir: Path) -> Path:
    """Create `data_dir` if needed, or raise DownloadError saying why it cannot be used."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(
            f"{data_dir}: cannot create the data directory ({error.strerror or error}); "
            "choose a writable data directory"
        ) from error
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise DownloadError(
            f"{data_dir}: the data directory is not writable; choose a writable data directory"
        )
    return data_dir


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """Read `bytes <start>-<end>/<total>` or `bytes */<total>` into (start, total)."""
    if not value or not value.strip().lower().startswith("bytes"):
        return None, None
    span, _, total_text = value.strip()[5:].strip().partition("/")
    start_text = span.partition("-")[0]
    start = int(start_text) if start_text.isdigit() else None
    total = int(total_text) if total_text.strip().isdigit() else None
    return start, total


def _int_header(value: str | None) -> int | None:
    """An integer header value, or None when it is missing or not a number."""
    return int(value) if value is not None and value.strip().isdigit() else None


def _size_of(path: Path) -> int:
    """The size of `path` in bytes, 0 when it does not exist."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _digest(path: Path, algorithm: str) -> str:
    """The hex digest of a file, read in chunks so a 1 GB file costs no memory."""
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as source:
        while chunk := source.read(1024 * 1024):
            hasher.update(chunk)
    return hasher.hexdigest()


def _describe(error: BaseException) -> str:
    """A short human reason for a transfer failure."""
    if isinstance(error, _Interrupted):
        return str(error)
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}: {reason}".rstrip(": ")
    return str(reason)
