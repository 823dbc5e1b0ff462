"""`export --out` and `backup --out` never write over a store, its companions, FIFOs or devices."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_cli_export_status import scripted_run
from visinstruct.core.errors import ExitCode
from visinstruct.core.store.database import Store

CliResult = tuple[int, str, str]
RunCli = Callable[..., CliResult]
COMMANDS = [("export", "llava"), ("export", "jsonl"), ("export", "hf"), ("backup", None)]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _target(kind: str, db: Path, tmp_path: Path) -> Path:
    """A path of the given kind; the store's companions are made to exist where needed."""
    if kind in ("store", "-wal", "-shm", "-journal", "-lock"):
        path = db.with_name(db.name + ("" if kind == "store" else kind))
        if not path.exists():
            path.write_bytes(b"companion")
        return path
    if kind.startswith("symlink"):
        link = tmp_path / f"link-{kind}.json"
        link.symlink_to(db if kind == "symlink to store" else db.with_name(db.name + "-wal"))
        if not link.resolve().exists():
            link.resolve().write_bytes(b"companion")
        return link
    if kind == "hard link to store":
        link = tmp_path / "hard.json"
        os.link(db, link)
        return link
    if kind == "fifo":
        fifo = tmp_path / "pipe.json"
        os.mkfifo(fifo)
        return fifo
    device = tmp_path / "null-device"
    try:
        os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root")
    return device


KINDS = ["store", "-wal", "-shm", "-journal", "-lock", "symlink to store", "symlink to -wal",
         "hard link to store", "fifo", "device"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("command", "fmt"), COMMANDS, ids=["llava", "jsonl", "hf", "backup"])
def test_refused_with_exit_2_and_nothing_changed(
    command: str, fmt: str | None, kind: str, run_cli: RunCli, tmp_path: Path
) -> None:
    db = scripted_run(run_cli, tmp_path)
    target = _target(kind, db, tmp_path)
    before = {p.name: (_digest(p) if p.is_file() else p.lstat().st_mode)
              for p in tmp_path.iterdir() if not p.is_dir()}
    args = ["--format", fmt] if fmt else []
    code, stdout, err = run_cli(command, "--db", db, *args, "--out", target)
    assert code == ExitCode.BAD_INPUT, (code, err)
    assert stdout == "" and len(err.strip().splitlines()) == 1 and str(target) in err
    after = {p.name: (_digest(p) if p.is_file() else p.lstat().st_mode)
             for p in tmp_path.iterdir() if not p.is_dir()}
    assert after == before
    with Store(db) as store:  # the store still opens and holds its run
        assert store.scalar("SELECT COUNT(*) FROM runs") == 1
