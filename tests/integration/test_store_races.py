"""Runs started together on one store: exactly one writes it, the others refuse and touch
nothing."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from visinstruct.core.errors import ExitCode, StoreError
from visinstruct.core.store.writer_lock import holder_pid, lock_path, writer_lock
from visinstruct.dataset import sample

REPO = Path(__file__).resolve().parents[2]

# Every child imports first, then waits for a byte on stdin, so all three start the same run
# at the same moment (and each run lasts long enough that none ends before the others start).
_RUN_ON_SIGNAL = (
    "import sys\n"
    "from visinstruct.core.cli import main\n"
    "print('ready', file=sys.stderr, flush=True)\n"
    "sys.stdin.read(1)\n"
    "sys.exit(main(['run', '--headless', '--json', '--config', sys.argv[1]]))\n"
)


def _config(tmp_path: Path, db: Path) -> Path:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"latency": 0.1, "rules": []}))
    config = tmp_path / f"{db.stem}.toml"
    config.write_text(f"""
db = "{db}"
[source]
coco_captions = "{sample.captions_path()}"
limit = 4
[generation]
model = "fake"
tasks = ["conversation", "detail"]
[judge]
model = "fake"
[models.fake]
backend = "scripted"
script = "{script}"
""")
    return config


def test_three_runs_on_one_new_store_one_runs_and_keeps_every_paid_call(tmp_path: Path) -> None:
    for attempt in range(6):
        db = tmp_path / f"race{attempt}.db"
        config = _config(tmp_path, db)
        children = [subprocess.Popen([sys.executable, "-c", _RUN_ON_SIGNAL, str(config)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=REPO)
                    for _ in range(3)]
        for child in children:  # every child has imported everything and waits
            assert child.stderr is not None and child.stderr.readline() == b"ready\n"
        for child in children:
            assert child.stdin is not None
            child.stdin.write(b"x")
            child.stdin.close()
        results = [(child.wait(timeout=120), child.stdout.read().decode(),  # type: ignore[union-attr]
                    child.stderr.read().decode()) for child in children]  # type: ignore[union-attr]
        codes = sorted(code for code, _, _ in results)
        assert codes == [ExitCode.OK, ExitCode.BAD_INPUT, ExitCode.BAD_INPUT], results
        for code, _, err in results:
            if code == ExitCode.BAD_INPUT:
                assert "is writing this store" in err and len(err.strip().splitlines()) == 1
        winner_out = next(out for code, out, _ in results if code == ExitCode.OK)
        finished = json.loads(winner_out.strip().splitlines()[-1])
        assert finished["event"] == "RunFinished" and finished["status"] == "finished"
        with sqlite3.connect(db) as conn:
            ok_calls = conn.execute(
                "SELECT COUNT(*) FROM llm_calls WHERE status = 'ok'").fetchone()[0]
            runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        assert runs == 1
        assert ok_calls == finished["calls"] > 0  # 4 images x 2 tasks, generated and judged
        assert not lock_path(db).exists()  # the lock goes with its holder


def test_a_second_writer_is_refused_and_a_dead_ones_lock_is_no_lock(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys\nfrom visinstruct.core.store.writer_lock import writer_lock\n"
         "with writer_lock(sys.argv[1]):\n    print('held', flush=True)\n    sys.stdin.read(1)\n",
         str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO)
    assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
    assert holder_pid(db) == holder.pid
    with pytest.raises(StoreError, match=f"pid {holder.pid}"):
        with writer_lock(db):
            pass
    assert not db.exists()  # refused before anything was created
    holder.kill()
    holder.wait()
    assert holder_pid(db) is None  # the lock died with its process, though its file remains
    with writer_lock(db):
        with writer_lock(db):  # re-entrant within a process
            assert holder_pid(db) is None
    assert not lock_path(db).exists()
