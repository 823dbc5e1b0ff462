"""Downloads against a loopback file server: resume, restart, verification, errors, extraction."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.fileserver import FileServer
from visinstruct.core.cli.download_progress import rich_progress
from visinstruct.core.errors import DataError, DownloadError
from visinstruct.dataset.download import (
    ANNOTATION_MEMBERS,
    COCO_ANNOTATIONS_URL,
    DEFAULT_SPECS,
    MIX665K_URL,
    DownloadSpec,
    default_specs,
    download,
    download_all,
    extract_annotations,
)

SOURCE_BYTES = bytes(range(256)) * 4000  # ~1 MB, several read chunks
DROP_AFTER = 300_000


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep urllib from sending loopback requests through a proxy set in the environment."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                 "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer({"/mix665k.json": SOURCE_BYTES}) as running:
        yield running


def spec_for(server: FileServer, **changes: Any) -> DownloadSpec:
    base = DownloadSpec("mix665k", server.url("/mix665k.json"), "llava_v1_5_mix665k.json")
    return dataclasses.replace(base, **changes)


def test_complete_download_lands_at_final_name_with_progress(
    server: FileServer, tmp_path: Path
) -> None:
    seen: list[tuple[str, int, int | None]] = []
    spec = spec_for(server, size=len(SOURCE_BYTES), sha256=hashlib.sha256(SOURCE_BYTES).hexdigest())

    path = download(spec, tmp_path / "data", progress=lambda *call: seen.append(call))

    assert path == tmp_path / "data" / "llava_v1_5_mix665k.json"
    assert path.read_bytes() == SOURCE_BYTES
    assert not path.with_name(path.name + ".part").exists()
    assert server.range_headers == [None]
    assert seen[-1] == ("mix665k", len(SOURCE_BYTES), len(SOURCE_BYTES))
    assert [done for _, done, _ in seen] == sorted(done for _, done, _ in seen)


def test_dropped_connection_resumes_from_bytes_held(server: FileServer, tmp_path: Path) -> None:
    server.drop_after_bytes, server.drop_first_requests = DROP_AFTER, 1

    path = download(spec_for(server), tmp_path, retries=3, backoff=0)

    assert server.request_count == 2
    assert server.range_headers == [None, f"bytes={DROP_AFTER}-"]
    assert path.read_bytes() == SOURCE_BYTES


def test_resume_across_two_download_calls(server: FileServer, tmp_path: Path) -> None:
    server.drop_after_bytes, server.drop_first_requests = DROP_AFTER, 1
    spec = spec_for(server)
    part = tmp_path / "llava_v1_5_mix665k.json.part"

    with pytest.raises(DownloadError, match="mix665k.*run again to resume") as caught:
        download(spec, tmp_path, retries=0, backoff=0)
    assert "\n" not in str(caught.value)
    assert part.read_bytes() == SOURCE_BYTES[:DROP_AFTER]
    assert not (tmp_path / spec.dest_name).exists()

    path = download(spec, tmp_path, retries=0, backoff=0)

    assert server.range_headers == [None, f"bytes={DROP_AFTER}-"]
    assert path.read_bytes() == SOURCE_BYTES
    assert not part.exists()


def test_server_ignoring_range_restarts_from_zero(server: FileServer, tmp_path: Path) -> None:
    server.drop_after_bytes, server.drop_first_requests = DROP_AFTER, 1
    server.ignore_range = True

    path = download(spec_for(server), tmp_path, retries=2, backoff=0)

    assert server.range_headers == [None, f"bytes={DROP_AFTER}-"]
    assert path.read_bytes() == SOURCE_BYTES  # rewritten, not appended to the old prefix


def test_416_on_a_whole_part_is_accepted_after_size_check(
    server: FileServer, tmp_path: Path
) -> None:
    (tmp_path / "llava_v1_5_mix665k.json.part").write_bytes(SOURCE_BYTES)

    path = download(spec_for(server, size=len(SOURCE_BYTES)), tmp_path)

    assert server.range_headers == [f"bytes={len(SOURCE_BYTES)}-"]
    assert path.read_bytes() == SOURCE_BYTES


def test_part_longer_than_the_file_is_discarded(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / "llava_v1_5_mix665k.json.part").write_bytes(SOURCE_BYTES + b"extra")

    path = download(spec_for(server), tmp_path, backoff=0)

    assert server.range_headers == [f"bytes={len(SOURCE_BYTES) + 5}-", None]
    assert path.read_bytes() == SOURCE_BYTES


def test_checksum_mismatch_leaves_no_file(server: FileServer, tmp_path: Path) -> None:
    spec = spec_for(server, sha256=hashlib.sha256(b"something else").hexdigest())

    with pytest.raises(DownloadError, match="mix665k.*sha256") as caught:
        download(spec, tmp_path)

    assert "\n" not in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_md5_mismatch_is_caught_too(server: FileServer, tmp_path: Path) -> None:
    spec = DownloadSpec("mix665k", server.url("/mix665k.json"), "m.json", md5="0" * 32)

    with pytest.raises(DownloadError, match="md5"):
        download(spec, tmp_path)
    assert not (tmp_path / "m.json").exists()


def test_fewer_bytes_than_the_expected_size_is_an_error(server: FileServer, tmp_path: Path) -> None:
    spec = spec_for(server, size=len(SOURCE_BYTES) + 10)

    with pytest.raises(DownloadError, match=f"{len(SOURCE_BYTES)} bytes"):
        download(spec, tmp_path)
    assert not (tmp_path / spec.dest_name).exists()


def test_http_404_names_the_url_and_status(server: FileServer, tmp_path: Path) -> None:
    spec = spec_for(server, url=server.url("/missing.json"))

    with pytest.raises(DownloadError, match="404") as caught:
        download(spec, tmp_path, backoff=0)

    assert spec.url in str(caught.value)
    assert server.request_count == 1  # a missing file is not retried
    assert list(tmp_path.iterdir()) == []


def test_server_errors_are_retried(server: FileServer, tmp_path: Path) -> None:
    server.force_status = 503

    with pytest.raises(DownloadError, match="503"):
        download(spec_for(server), tmp_path, retries=2, backoff=0)

    assert server.request_count == 3


def test_complete_final_file_is_not_fetched_again(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / "llava_v1_5_mix665k.json").write_bytes(SOURCE_BYTES)
    seen: list[tuple[str, int, int | None]] = []
    spec = spec_for(server, size=len(SOURCE_BYTES), sha256=hashlib.sha256(SOURCE_BYTES).hexdigest())

    path = download(spec, tmp_path, progress=lambda *call: seen.append(call))

    assert server.request_count == 0
    assert path.read_bytes() == SOURCE_BYTES
    assert seen == [("mix665k", len(SOURCE_BYTES), len(SOURCE_BYTES))]


def test_final_file_with_wrong_checksum_is_fetched_again(server: FileServer,
                                                        tmp_path: Path) -> None:
    (tmp_path / "llava_v1_5_mix665k.json").write_bytes(b"stale")
    spec = spec_for(server, sha256=hashlib.sha256(SOURCE_BYTES).hexdigest())

    path = download(spec, tmp_path)

    assert server.request_count == 1
    assert path.read_bytes() == SOURCE_BYTES


def test_unwritable_data_dir_is_a_clear_error(server: FileServer, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    with pytest.raises(DownloadError, match="a-file.*data directory"):
        download(spec_for(server), blocker / "data")
    assert server.request_count == 0


def test_download_all_keeps_order(tmp_path: Path) -> None:
    files = {"/a.zip": b"zip bytes", "/b.json": b"[]"}
    with FileServer(files) as running:
        specs = [
            DownloadSpec("a", running.url("/a.zip"), "a.zip"),
            DownloadSpec("b", running.url("/b.json"), "b.json"),
        ]
        paths = download_all(specs, tmp_path)
    assert [path.read_bytes() for path in paths] == [b"zip bytes", b"[]"]


def test_default_specs_use_official_urls_and_take_overrides() -> None:
    assert [spec.url for spec in DEFAULT_SPECS] == [COCO_ANNOTATIONS_URL, MIX665K_URL]
    overridden = default_specs("http://mirror/ann.zip", "http://mirror/mix.json")
    assert [spec.url for spec in overridden] == ["http://mirror/ann.zip", "http://mirror/mix.json"]
    assert [spec.dest_name for spec in overridden] == [s.dest_name for s in DEFAULT_SPECS]


def test_rich_progress_draws_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with rich_progress() as progress:
        progress("mix665k", 0, 100)
        progress("mix665k", 100, 100)
        progress("coco_annotations", 5, None)
    captured = capsys.readouterr()
    assert "mix665k" in captured.err
    assert captured.out == ""


def build_annotations_zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_extracts_only_the_annotation_members(tmp_path: Path) -> None:
    contents = {name: f'{{"file": "{name}"}}'.encode() * 500 for name in ANNOTATION_MEMBERS}
    zip_path = tmp_path / "annotations_trainval2017.zip"
    build_annotations_zip(
        zip_path, {**contents, "annotations/person_keypoints_train2017.json": b"{}"})

    paths = extract_annotations(zip_path, tmp_path)

    assert paths == [tmp_path / name for name in ANNOTATION_MEMBERS]
    assert {name: (tmp_path / name).read_bytes() for name in ANNOTATION_MEMBERS} == contents
    assert sorted(p.name for p in (tmp_path / "annotations").iterdir()) == sorted(
        Path(name).name for name in ANNOTATION_MEMBERS
    )


def test_zip_lacking_a_member_extracts_nothing(tmp_path: Path) -> None:
    zip_path = tmp_path / "annotations_trainval2017.zip"
    build_annotations_zip(zip_path, {"annotations/captions_train2017.json": b"{}"})

    with pytest.raises(DataError, match="instances_train2017.json"):
        extract_annotations(zip_path, tmp_path)
    assert not (tmp_path / "annotations").exists()


def test_not_a_zip_is_a_clear_error(tmp_path: Path) -> None:
    zip_path = tmp_path / "annotations_trainval2017.zip"
    zip_path.write_bytes(b"<html>Access denied</html>")

    with pytest.raises(DataError, match="annotations_trainval2017.zip.*not a zip") as caught:
        extract_annotations(zip_path, tmp_path)
    assert "\n" not in str(caught.value)


def test_zip_downloaded_then_extracted(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ANNOTATION_MEMBERS:
            archive.writestr(name, name.encode())
    with FileServer({"/ann.zip": buffer.getvalue()}) as running:
        spec = DownloadSpec("coco_annotations", running.url("/ann.zip"), "annotations.zip")
        zip_path = download(spec, tmp_path)
    paths = extract_annotations(zip_path, tmp_path)
    assert [path.read_text() for path in paths] == list(ANNOTATION_MEMBERS)


def test_unreachable_server_gives_up_naming_the_url(tmp_path: Path) -> None:
    with FileServer({}) as stopped:
        url = stopped.url("/mix665k.json")
    spec = DownloadSpec("mix665k", url, "llava_v1_5_mix665k.json")

    with pytest.raises(DownloadError, match="Connection") as caught:
        download(spec, tmp_path, retries=1, backoff=0)

    assert url in str(caught.value)
    assert list(tmp_path.iterdir()) == []
