"""Refused before any work: bad ranges and missing AWS credentials exit 2 and create nothing;
several first opens of one new store all succeed."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from visinstruct.core.cli.stores import opened_store
from visinstruct.core.errors import ExitCode, InputError
from visinstruct.core.store.database import Store
from visinstruct.core.store.schema import LATEST_VERSION, MIGRATIONS
from visinstruct.dataset import sample

CliResult = tuple[int, str, str]
RunCli = Callable[..., CliResult]


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("setting", [
    "generation.max_tokens=-5", "generation.temperature=-3", "generation.top_p=7.5",
    "models.tiny.read_timeout=-1", "models.tiny.probe_seconds=-2",
    "models.claude.price_in_per_million=-1",
])
def test_a_bad_range_exits_2_and_leaves_no_store(
    setting: str, run_cli: RunCli, tmp_path: Path
) -> None:
    db = tmp_path / "new.db"
    code, stdout, err = run_cli("run", "--headless", "--db", db, "--set", setting)
    assert code == ExitCode.BAD_INPUT and stdout == ""
    assert setting.split("=")[0].split(".")[-1] in one_line(err)
    assert list(tmp_path.iterdir()) == []


def test_a_bad_base_url_is_refused_before_the_store_is_made(
    run_cli: RunCli, tmp_path: Path
) -> None:
    config = tmp_path / "run.toml"
    config.write_text('db = "new.db"\n[generation]\nmodel = "o"\n[judge]\nmodel = "o"\n'
                      '[models.o]\nbackend = "openai"\nbase_url = "ftp://127.0.0.1/v1"\n'
                      'model = "x"\n', encoding="utf-8")
    code, _, err = run_cli("run", "--headless", "--config", config, "--limit", "1")
    assert code == ExitCode.BAD_INPUT, err
    assert "base_url" in one_line(err) and "'ftp'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.toml"]


def test_bad_input_found_after_opening_removes_the_new_store(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    with pytest.raises(InputError):
        with opened_store(db, for_writing=True) as store:
            store.set_meta("half", "done")
            raise InputError("found late")
    assert list(tmp_path.iterdir()) == []
    existing = tmp_path / "old.db"
    Store(existing).close()
    with pytest.raises(InputError):
        with opened_store(existing, for_writing=True):
            raise InputError("found late")
    assert existing.is_file()  # a store that was there before is never removed


def _no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS identity anywhere: no variables, empty config files, no instance metadata."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    empty = tmp_path / "aws-empty"
    empty.write_text("", encoding="utf-8")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    # Never ask the link-local metadata service: this is no EC2 instance.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_evaluate_without_aws_credentials_exits_2_before_any_call(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "store.db"
    assert run_cli("prepare", "--db", db, "--coco-captions", sample.captions_path())[0] == 0
    before = db.read_bytes()
    _no_aws(monkeypatch, tmp_path)
    code, stdout, err = run_cli("evaluate", "--db", db)
    line = one_line(err)
    assert code == ExitCode.BAD_INPUT and stdout == ""
    assert "no AWS credentials" in line and "--set evaluation.model=" in line
    assert "[models.claude]" in line and "us-east-1" in line
    assert db.read_bytes() == before


def test_run_with_an_aws_model_and_no_credentials_exits_2(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_aws(monkeypatch, tmp_path)
    config = tmp_path / "run.toml"
    config.write_text('db = "new.db"\n[generation]\nmodel = "mixtral"\n'
                      '[models.mixtral]\nbackend = "sagemaker"\nendpoints = ["mixtral-a"]\n',
                      encoding="utf-8")
    code, _, err = run_cli("run", "--headless", "--config", config)
    assert code == ExitCode.BAD_INPUT
    assert "[models.mixtral]" in one_line(err) and "no AWS credentials" in err
    assert not (tmp_path / "new.db").exists()


def test_an_aws_model_without_a_region_is_named(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    code, _, err = run_cli("run", "--headless", "--db", tmp_path / "new.db",
                           "--set", "generation.model=claude", "--set", 'models.claude.region=""')
    assert code == ExitCode.BAD_INPUT and "no AWS region" in one_line(err)


_OPEN_ON_SIGNAL = (
    "import sys\n"
    "from visinstruct.core.store.database import Store\n"
    "sys.stdin.read(1)\n"  # every child waits here, so all open the new store at once
    "Store(sys.argv[1]).close()\n"
)


def test_several_first_opens_of_a_new_store_all_succeed(tmp_path: Path) -> None:
    for attempt in range(3):
        db = tmp_path / f"race{attempt}.db"
        children = [subprocess.Popen([sys.executable, "-c", _OPEN_ON_SIGNAL, str(db)],
                                     stdin=subprocess.PIPE, stderr=subprocess.PIPE)
                    for _ in range(6)]
        for child in children:
            assert child.stdin is not None
            child.stdin.write(b"x")
            child.stdin.close()
        results = [(child.wait(timeout=120), child.stderr.read().decode() if child.stderr else "")
                   for child in children]
        assert [code for code, _ in results] == [0] * 6, results
        conn = sqlite3.connect(db)
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        conn.close()
        assert meta["application"] == "visinstruct"
        assert meta["schema_version"] == str(LATEST_VERSION)
        assert meta["applied_migrations"] == ",".join(str(m[0]) for m in MIGRATIONS)
