"""Export onto odd paths: symlinks are written through, FIFOs and devices refused, `-` is stdout."""

from __future__ import annotations

import io
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from visinstruct.core.errors import ExitCode, ExportError
from visinstruct.core.export.writers import ExportItem, RecordRejected, export, export_to_stream
from visinstruct.core.records import Pair

ITEM = ExportItem(9, "detail", (Pair("Describe the image.", "A giraffe by a fence."),))
BAD = ExportItem(10, "detail", (Pair("What is on the table?", ""),))  # an empty answer is refused


def test_a_symlink_is_written_through_to_its_target(tmp_path: Path) -> None:
    real_folder = tmp_path / "real"
    real_folder.mkdir()
    target = real_folder / "data.json"
    target.write_text("old", encoding="utf-8")
    link = tmp_path / "link.json"
    link.symlink_to(target)

    summary = export([ITEM], "llava", link)

    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text(encoding="utf-8"))[0]["id"] == "000000000009"
    assert summary.path == link and summary.records == 1
    # The temporary file lived beside the target (one filesystem, atomic rename) and is gone.
    assert sorted(p.name for p in real_folder.iterdir()) == ["data.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real"]


def test_a_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    target = tmp_path / "made" / "later.jsonl"
    link = tmp_path / "out.jsonl"
    link.symlink_to(target)
    export([ITEM], "jsonl", link)
    assert link.is_symlink() and json.loads(target.read_text(encoding="utf-8"))["task"] == "detail"


def test_a_fifo_is_refused_and_left_in_place(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ExportError) as caught:
        export([ITEM], "llava", fifo)
    assert caught.value.exit_code == ExitCode.BAD_INPUT
    assert "FIFO" in str(caught.value) and str(fifo) in str(caught.value)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_a_symlink_to_a_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to(fifo)
    with pytest.raises(ExportError, match="FIFO"):
        export([ITEM], "jsonl", link)
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and link.is_symlink()


@pytest.mark.parametrize("fmt", ["llava", "jsonl", "hf"])
def test_a_device_is_refused_in_every_format(fmt: str) -> None:
    before = os.stat("/dev/null")
    with pytest.raises(ExportError, match="a device"):
        export([ITEM], fmt, Path("/dev/null"))
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


@pytest.mark.parametrize("fmt", ["llava", "jsonl"])
def test_dash_writes_to_stdout(fmt: str, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    summary = export([ITEM], fmt, "-")
    out = capsysbinary.readouterr().out.decode("utf-8")
    assert summary.records == 1 and str(summary.path) == "-"
    if fmt == "llava":
        assert json.loads(out)[0]["conversations"][1]["value"] == "A giraffe by a fence."
    else:
        assert json.loads(out.splitlines()[0])["task"] == "detail"
    assert not Path("-").exists()


def test_a_rejected_record_writes_nothing_to_the_stream() -> None:
    stream = io.StringIO()
    with pytest.raises(RecordRejected):
        export_to_stream([ITEM, BAD], "llava", stream)
    assert stream.getvalue() == ""


def test_dash_is_refused_for_hf() -> None:
    with pytest.raises(ExportError, match="folder"):
        export([ITEM], "hf", "-")


def test_stream_output_is_utf8_bytes_whatever_the_stream_encoding() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    item = ExportItem(3, "detail", (Pair("Qu'y a-t-il ?", "Un café — très noir."),))
    export_to_stream([item], "jsonl", stream)
    assert "très" in raw.getvalue().decode("utf-8")
    assert sys.stdout is not stream
