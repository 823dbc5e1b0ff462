"""A store remembers the config it was prepared or last run with: `run --db STORE` without
--config uses it (not the embedded defaults), --set goes on top, and --config still wins."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from visinstruct.core.errors import ExitCode
from visinstruct.core.store.database import Store
from visinstruct.core.store.run_config import recorded_config
from visinstruct.dataset import sample

CliResult = tuple[int, str, str]
RunCli = Callable[..., CliResult]


def scripted_config(folder: Path, model: str, *, threshold: int = 7) -> Path:
    """A config on the bundled sample whose one scripted model is called `model`."""
    script = folder / f"{model}-script.json"
    script.write_text(json.dumps({"rules": []}), encoding="utf-8")
    config = folder / f"{model}.toml"
    config.write_text(
        f'db = "{folder / "run.db"}"\n[source]\n'
        f'coco_captions = "{sample.captions_path()}"\n'
        f'coco_instances = "{sample.instances_path()}"\n'
        f'[generation]\nmodel = "{model}"\n[judge]\nmodel = "{model}"\nthreshold = {threshold}\n'
        f'[models.{model}]\nbackend = "scripted"\nscript = "{script}"\n', encoding="utf-8")
    return config


def models_called(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT model, COUNT(*) FROM llm_calls GROUP BY model"))
    conn.close()
    return rows


def origin_of(db: Path) -> str:
    with Store(db, readonly=True) as store:
        config = recorded_config(store)
    assert config is not None
    return config.origin


def test_run_db_uses_the_config_prepare_was_given(run_cli: RunCli, tmp_path: Path) -> None:
    config = scripted_config(tmp_path, "scribe")
    db = tmp_path / "run.db"
    assert run_cli("prepare", "--config", config)[0] == ExitCode.OK
    assert origin_of(db) == (f"the config `prepare` recorded in {db} "
                             f"(from {config.resolve()})")

    # No --config: the prepared config's scripted model runs, not the bundled local one.
    code, _out, err = run_cli("run", "--headless", "--db", db, "--limit", "1",
                              "--set", "judge.threshold=9")
    assert code == ExitCode.OK, err
    assert set(models_called(db)) == {"scribe"}
    with sqlite3.connect(db) as conn:
        settings = json.loads(conn.execute("SELECT config FROM runs").fetchone()[0])
    conn.close()
    assert settings["judge"]["threshold"] == 9  # --set went on top of the recorded config
    assert settings["origin"].startswith("the config `prepare` recorded in")

    # Run again and again from the recorded config: its origin names the file, never nests.
    for _ in range(2):
        assert run_cli("run", "--headless", "--db", db, "--limit", "1")[0] == ExitCode.OK
    assert origin_of(db) == f"the config run 3 recorded in {db} (from {config.resolve()})"


def test_an_explicit_config_wins_and_the_latest_record_is_used(run_cli: RunCli,
                                                               tmp_path: Path) -> None:
    prepared = scripted_config(tmp_path, "scribe")
    other = scripted_config(tmp_path, "quill")
    db = tmp_path / "run.db"
    assert run_cli("prepare", "--config", prepared)[0] == ExitCode.OK
    code, _out, err = run_cli("run", "--headless", "--config", other, "--limit", "1")
    assert code == ExitCode.OK, err
    assert set(models_called(db)) == {"quill"}
    # The run came after prepare: its config is now the store's.
    assert origin_of(db).startswith("the config run 1 recorded in")

    # prepare again with a config: that one is the newest.
    assert run_cli("prepare", "--config", prepared)[0] == ExitCode.OK
    assert origin_of(db).startswith("the config `prepare` recorded in")
    code, _out, err = run_cli("run", "--headless", "--db", db, "--limit", "2")
    assert code == ExitCode.OK, err
    assert models_called(db).get("scribe", 0) > 0


def test_prepare_without_a_config_records_none(run_cli: RunCli, tmp_path: Path) -> None:
    db = tmp_path / "plain.db"
    code, _out, err = run_cli("prepare", "--db", db, "--coco-captions", sample.captions_path())
    assert code == ExitCode.OK, err
    with Store(db, readonly=True) as store:
        assert recorded_config(store) is None


def test_an_older_store_is_upgraded_not_refused_when_its_config_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from visinstruct.core.cli.main import build_parser
    from visinstruct.core.cli.options import run_config_from_args
    from visinstruct.core.store import database
    from visinstruct.core.store.schema import LATEST_VERSION, MIGRATIONS

    db = tmp_path / "old.db"
    monkeypatch.setattr(database, "MIGRATIONS", MIGRATIONS[:1])
    Store(db).close()
    monkeypatch.undo()
    config = run_config_from_args(build_parser().parse_args(["run", "--db", str(db)]))
    assert config.origin == "<embedded defaults>" and config.db == db
    with Store(db) as store:
        assert store.get_meta("schema_version") == str(LATEST_VERSION)
