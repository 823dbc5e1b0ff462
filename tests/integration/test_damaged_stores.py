"""Damaged and read-only stores: one line naming the file (exit 2), reads still work read-only."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from visinstruct.core.errors import ExitCode, StoreError
from visinstruct.core.store import opening
from visinstruct.core.store.database import Store
from visinstruct.dataset import sample

CliResult = tuple[int, str, str]
RunCli = Callable[..., CliResult]


@pytest.fixture
def store_file(run_cli: RunCli, tmp_path: Path) -> Path:
    """A closed store holding the bundled sample images (several pages of data)."""
    db = tmp_path / "store.db"
    code, _, err = run_cli("prepare", "--db", db, "--coco-captions", sample.captions_path(),
                           "--coco-instances", sample.instances_path())
    assert code == ExitCode.OK, err
    assert not db.with_name("store.db-wal").exists()  # closed cleanly: all in the main file
    return db


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def assert_damaged(code: int, stdout: str, err: str, db: Path) -> None:
    line = one_line(err)
    assert code == ExitCode.BAD_INPUT and stdout == ""
    assert str(db) in line and "damaged" in line and ".recover" in line, line
    assert "Traceback" not in err


def test_a_corrupt_body_behind_a_valid_header(run_cli: RunCli, store_file: Path) -> None:
    data = bytearray(store_file.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    assert len(data) > 4 * page
    # Page 1 (header and schema) stays; every data page after it becomes noise.
    for offset in range(2 * page, len(data), 7):
        data[offset] = (data[offset] * 31 + 7) % 256
    store_file.write_bytes(bytes(data))
    for command in ("status", "export"):
        extra = ("--out", store_file.with_name("out.json")) if command == "export" else ()
        code, stdout, err = run_cli(command, "--db", store_file, *extra)
        assert_damaged(code, stdout, err, store_file)
    assert not store_file.with_name("out.json").exists()


def test_a_truncated_store(run_cli: RunCli, store_file: Path) -> None:
    size = store_file.stat().st_size
    with store_file.open("r+b") as handle:
        handle.truncate(size // 2)
    code, stdout, err = run_cli("status", "--db", store_file)
    assert_damaged(code, stdout, err, store_file)
    assert "truncated" in err
    assert store_file.stat().st_size == size // 2  # nothing was written to it


def test_a_store_cut_inside_its_header(run_cli: RunCli, store_file: Path) -> None:
    with store_file.open("r+b") as handle:
        handle.truncate(40)
    code, stdout, err = run_cli("status", "--db", store_file)
    assert_damaged(code, stdout, err, store_file)


def test_a_dropped_table(run_cli: RunCli, store_file: Path) -> None:
    conn = sqlite3.connect(store_file)
    conn.execute("DROP TABLE llm_calls")
    conn.commit()
    conn.close()
    for command in ("status", "run"):
        extra = ("--headless", "--limit", "1") if command == "run" else ()
        code, stdout, err = run_cli(command, "--db", store_file, *extra)
        assert_damaged(code, stdout, err, store_file)
        assert "llm_calls" in err


def _unwritable(monkeypatch: pytest.MonkeyPatch, *paths: Path) -> None:
    """Report `paths` as not writable: tests run as root, where permission bits do not bind."""
    real_access = os.access
    refused = {str(p) for p in paths}

    def access(path: object, mode: int, **kwargs: object) -> bool:
        if str(path) in refused and mode & os.W_OK:
            return False
        return real_access(path, mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(opening.os, "access", access)


@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_store_is_read_but_not_run(
    what: str, run_cli: RunCli, store_file: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _unwritable(monkeypatch, store_file if what == "file" else store_file.parent)
    before = store_file.read_bytes()

    code, stdout, err = run_cli("status", "--db", store_file, "--json")
    assert code == ExitCode.OK, err
    assert json.loads(stdout)["images"] == 24
    out = tmp_path / "exported" / "out.json"
    code, _, err = run_cli("export", "--db", store_file, "--out", out)
    assert code == ExitCode.OK, err
    assert json.loads(out.read_text(encoding="utf-8")) == []
    code, _, err = run_cli("analyze", "--db", store_file, "--out", tmp_path / "report")
    assert code == ExitCode.OK, err
    assert (tmp_path / "report" / "figures.json").is_file()
    code, _, err = run_cli("evaluate", "--db", store_file, "--set", "evaluation.model=tiny")
    assert code == ExitCode.BAD_INPUT and "read-only" in one_line(err)

    code, stdout, err = run_cli("run", "--headless", "--db", store_file, "--limit", "1")
    line = one_line(err)
    assert code == ExitCode.BAD_INPUT and stdout == ""
    assert str(store_file) in line and "read-only" in line, line
    # Opened in SQLite's read-only mode: nothing was written (readers may still share a -shm).
    assert store_file.read_bytes() == before
    wal = store_file.with_name("store.db-wal")
    assert not wal.exists() or wal.stat().st_size == 0


def test_a_read_only_store_refuses_writes(store_file: Path) -> None:
    store = Store(store_file, readonly=True)
    try:
        assert store.scalar("SELECT COUNT(*) FROM images") == 24
        with pytest.raises(StoreError, match="read-only"):
            store.set_meta("x", "y")
    finally:
        store.close()


def _can_mount_read_only(folder: Path) -> bool:
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c",
         f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder} {folder}"],
        capture_output=True, check=False)
    return probe.returncode == 0


def _read_only_mount_script(folder: Path, *commands: str) -> list[str]:
    """`unshare` arguments running `commands` (each followed by its exit code) with `folder`
    bind-mounted read-only in a private mount namespace."""
    steps = " ; ".join(f"{command} ; echo exit=$?" for command in commands)
    return ["unshare", "-m", "sh", "-c",
            f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder} {folder} && "
            f"{steps}"]


def _cli(*args: object) -> str:
    return " ".join([sys.executable, "-m", "visinstruct.core.cli", *(str(a) for a in args)])


@pytest.fixture
def read_only_mounts(tmp_path: Path) -> None:
    if shutil.which("unshare") is None or not _can_mount_read_only(tmp_path):
        pytest.skip("needs unshare and mount rights (root in a private mount namespace)")


@pytest.mark.usefixtures("read_only_mounts")
def test_status_in_a_really_read_only_folder(store_file: Path) -> None:
    """A read-only bind mount: the kernel refuses writes even to root (EROFS)."""
    done = subprocess.run(
        _read_only_mount_script(store_file.parent, _cli("status", "--db", store_file),
                                _cli("run", "--headless", "--limit", "1", "--db", store_file)),
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "NO_COLOR": "1"})
    exits = [line for line in done.stdout.splitlines() if line.startswith("exit=")]
    assert exits == ["exit=0", "exit=2"], done.stdout + done.stderr
    assert "images" in done.stdout
    assert "read-only" in done.stderr and "Traceback" not in done.stderr


_LEAVE_WAL = (
    "import os, sqlite3, sys\n"
    "conn = sqlite3.connect(sys.argv[1])\n"
    "conn.execute('PRAGMA wal_autocheckpoint = 0')\n"
    "conn.execute(\"INSERT OR REPLACE INTO meta VALUES ('note', 'unsaved')\")\n"
    "conn.commit()\n"
    "os._exit(0)\n"  # no close, so no checkpoint: the change stays in the -wal file
)


@pytest.mark.usefixtures("read_only_mounts")
def test_unsaved_wal_changes_in_a_read_only_folder(store_file: Path) -> None:
    subprocess.run([sys.executable, "-c", _LEAVE_WAL, str(store_file)], check=True)
    assert store_file.with_name("store.db-wal").stat().st_size > 0

    def status() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            _read_only_mount_script(store_file.parent, _cli("status", "--db", store_file)),
            capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "NO_COLOR": "1"})

    # With its -shm beside it, SQLite reads the WAL's changes without writing anything.
    done = status()
    assert "exit=0" in done.stdout and "images" in done.stdout, done.stdout + done.stderr
    # Without it, the file alone would be stale: refused rather than read wrong.
    store_file.with_name("store.db-shm").unlink()
    done = status()
    assert "exit=2" in done.stdout, done.stdout + done.stderr
    line = one_line(done.stderr)
    assert "store.db-wal" in line and "writable folder" in line


@pytest.fixture
def run_store(run_cli: RunCli, tmp_path: Path) -> Path:
    """A closed store after a small offline run: a row in `runs`, pairs in `pairs`."""
    db = tmp_path / "run.db"
    config = tmp_path / "run.toml"
    config.write_text(f'db = "{db}"\n[source]\ncoco_captions = "{sample.captions_path()}"\n'
                      'limit = 3\n[generation]\nmodel = "fake"\n[judge]\nmodel = "fake"\n'
                      '[models.fake]\nbackend = "scripted"\n')
    code, _, err = run_cli("run", "--headless", "--config", config)
    assert code == ExitCode.OK, err
    assert not db.with_name("run.db-wal").exists()
    return db


def _scramble_page_of(db: Path, table: str) -> None:
    """Garble the cell pointers of `table`'s root page: its rows point outside the page."""
    with sqlite3.connect(db) as conn:
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?",
                               (table,)).fetchone()
        (size,) = conn.execute("PRAGMA page_size").fetchone()
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0
    conn.close()
    data = bytearray(db.read_bytes())
    start = (root - 1) * size + 8  # just past the page header of a leaf page
    for offset in range(start, start + 40):
        data[offset] = (data[offset] * 31 + 7) % 256
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("table", ["runs", "pairs"])
def test_a_damaged_page_is_noticed_by_every_reading_command(
        table: str, run_cli: RunCli, run_store: Path, tmp_path: Path) -> None:
    _scramble_page_of(run_store, table)
    before = run_store.read_bytes()
    for command, extra in (("status", ()), ("status", ("--json",)),
                           ("export", ("--out", tmp_path / "out.json")),
                           ("analyze", ("--out", tmp_path / "report")),
                           ("backup", ("--out", tmp_path / "copy.db"))):
        code, stdout, err = run_cli(command, "--db", run_store, *extra)
        assert_damaged(code, stdout, err, run_store)
        assert "quick_check" in err, (command, err)
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "copy.db").exists()
    assert not list(tmp_path.glob(".copy.db*"))
    assert run_store.read_bytes() == before


def test_reading_a_store_it_cannot_write_leaves_no_files_that_refuse_the_next_run(
        run_cli: RunCli, run_store: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patched:
        _unwritable(patched, run_store)  # as a chmod-444 file is for anyone but root
        for command, extra in (("status", ()), ("export", ("--out", tmp_path / "out.json")),
                               ("analyze", ("--out", tmp_path / "report")),
                               ("backup", ("--out", tmp_path / "copy.db"))):
            code, _, err = run_cli(command, "--db", run_store, *extra)
            assert code == ExitCode.OK, (command, err)
        # SQLite would have made them with the store's own mode: 0444, refusing any writer.
        assert sorted(p.name for p in tmp_path.glob("run.db-*")) == []
    code, _, err = run_cli("run", "--headless", "--config", tmp_path / "run.toml", "--limit", "4")
    assert code == ExitCode.OK, err
    with sqlite3.connect(tmp_path / "copy.db") as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    conn.close()


@pytest.mark.usefixtures("read_only_mounts")
def test_backup_of_a_store_on_a_read_only_mount(run_store: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path.parent / f"{tmp_path.name}-copies"
    elsewhere.mkdir()
    copy = elsewhere / "copy.db"
    done = subprocess.run(
        _read_only_mount_script(run_store.parent,
                                _cli("backup", "--db", run_store, "--out", copy)),
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "NO_COLOR": "1"})
    assert "exit=0" in done.stdout, done.stdout + done.stderr
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM pairs").fetchone()[0] > 0
    conn.close()
    shutil.rmtree(elsewhere)
