"""`prepare --download gqa,vqa` against a loopback file server: resumable, extracted, indexed."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from visinstruct.core.errors import DataError, ExitCode
from visinstruct.dataset import sample
from visinstruct.dataset.download_qa import download_gqa, download_vqa, extract_members
from visinstruct.tests.fakes.fileserver import FileServer

CliResult = tuple[int, str, str]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                 "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def files() -> dict[str, bytes]:
    graphs = sample.gqa_scene_graphs_path().read_bytes()
    questions = sample.gqa_questions_path().read_bytes()
    return {
        "/gqa/sceneGraphs.zip": zipped({"train_sceneGraphs.json": graphs,
                                        "val_sceneGraphs.json": b"{}"}),
        "/gqa/questions1.2.zip": zipped({"train_balanced_questions.json": questions,
                                         "val_balanced_questions.json": b"{}",
                                         "train_all_questions/train_all_questions_0.json": b"{}"}),
        "/vqa/q.zip": zipped({"v2_OpenEnded_mscoco_train2014_questions.json":
                              sample.vqa_questions_path().read_bytes()}),
        "/vqa/a.zip": zipped({"v2_mscoco_train2014_annotations.json":
                              sample.vqa_annotations_path().read_bytes()}),
    }


def test_gqa_and_vqa_downloads_resume_and_extract(tmp_path: Path) -> None:
    with FileServer(files()) as server:
        server.drop_after_bytes, server.drop_first_requests = 300, 1
        gqa = download_gqa(tmp_path, scene_graphs_url=server.url("/gqa/sceneGraphs.zip"),
                           questions_url=server.url("/gqa/questions1.2.zip"))
        assert server.range_headers[:2] == [None, "bytes=300-"]
        vqa = download_vqa(tmp_path, questions_url=server.url("/vqa/q.zip"),
                           annotations_url=server.url("/vqa/a.zip"))
        requests = server.request_count
        again = download_gqa(tmp_path, scene_graphs_url=server.url("/gqa/sceneGraphs.zip"),
                             questions_url=server.url("/gqa/questions1.2.zip"))
        assert server.request_count == requests  # whole files are not fetched again
    assert gqa == again == {"gqa_scene_graphs": tmp_path / "train_sceneGraphs.json",
                            "gqa_questions": tmp_path / "train_balanced_questions.json"}
    assert gqa["gqa_scene_graphs"].read_bytes() == sample.gqa_scene_graphs_path().read_bytes()
    assert (tmp_path / "val_sceneGraphs.json").is_file()
    assert vqa["vqa_annotations"].read_bytes() == sample.vqa_annotations_path().read_bytes()


def test_a_zip_without_the_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "sceneGraphs.zip"
    path.write_bytes(zipped({"other.json": b"{}"}))
    with pytest.raises(DataError) as caught:
        extract_members(path, tmp_path, ("train_sceneGraphs.json",))
    assert str(path) in str(caught.value) and "train_sceneGraphs.json" in str(caught.value)


def test_prepare_download_gqa_vqa_indexes_what_it_fetched(
        run_cli: Callable[..., CliResult], tmp_path: Path) -> None:
    with FileServer(files()) as server:
        config = tmp_path / "run.toml"
        config.write_text(f"""db = "{tmp_path / 's.db'}"
[source]
coco_captions = "{sample.captions_path()}"
[download]
data_dir = "{tmp_path / 'data'}"
gqa_scene_graphs_url = "{server.url('/gqa/sceneGraphs.zip')}"
gqa_questions_url = "{server.url('/gqa/questions1.2.zip')}"
vqa_questions_url = "{server.url('/vqa/q.zip')}"
vqa_annotations_url = "{server.url('/vqa/a.zip')}"
""")
        code, out, err = run_cli("prepare", "--config", config, "--download", "gqa,vqa",
                                 "--json")
    assert code == ExitCode.OK, err
    held = json.loads(out)["store"]
    assert held["images_by_source"] == {"coco": 24, "gqa": 4} and held["facts"] == 20
    code, _, err = run_cli("prepare", "--config", config, "--download", "gqa,flickr")
    assert code == ExitCode.BAD_INPUT and "coco, gqa, vqa" in err
