"""The worked example plugin (docs/examples/visinstruct-echo), installed the way pip would
install it, runs a headless run end to end through the `visinstruct.backends` entry point."""

from __future__ import annotations

import sqlite3
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from visinstruct.core.config import ENTRY_POINT_GROUP, forget_plugins, plugin_backends

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "visinstruct-echo"
CliResult = tuple[int, str, str]


def install(site: Path, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Install `project` into `site` as pip would without building: its module on sys.path, and
    a .dist-info with the entry points its pyproject.toml declares (what importlib.metadata reads).
    """
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    dist = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n",
        encoding="utf-8")
    lines = [f"{name} = {target}" for group, points in meta["entry-points"].items()
             for name, target in points.items()]
    groups = "\n".join(f"[{group}]\n" + "\n".join(lines) for group in meta["entry-points"])
    (dist / "entry_points.txt").write_text(groups + "\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(project))


@pytest.fixture
def echo_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The echo plugin installed for this test only; the registry looks for plugins afresh."""
    install(tmp_path / "site", EXAMPLE, monkeypatch)
    forget_plugins()
    yield
    forget_plugins()


def count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql).fetchone()[0])


def test_the_example_declares_its_backend_in_the_entry_point_group() -> None:
    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))
    assert meta["project"]["entry-points"][ENTRY_POINT_GROUP] == {
        "echo": "visinstruct_echo:BACKEND"}


def test_a_plugin_backend_runs_a_headless_run_end_to_end(
    echo_installed: None, tmp_path: Path, run_cli: Callable[..., CliResult]
) -> None:
    config = tmp_path / "run.toml"
    config.write_text('[generation]\nmodel = "mine"\ntasks = ["conversation", "detail"]\n'
                      '[judge]\nmodel = "mine"\n'
                      '[models.mine]\nbackend = "echo"\nendpoints = ["echo-a", "echo-b"]\n',
                      encoding="utf-8")
    db = tmp_path / "echo.db"

    code, _out, err = run_cli("run", "--headless", "--config", config, "--db", db,
                              "--limit", "3")

    assert code == 0, err
    assert "echo" in plugin_backends()
    assert count(db, "SELECT COUNT(*) FROM generations WHERE status = 'ok'") == 6
    assert count(db, "SELECT COUNT(*) FROM judgements WHERE score IS NOT NULL") > 0
    assert count(db, "SELECT COUNT(*) FROM llm_calls WHERE status = 'ok' AND model = 'mine' "
                     "AND endpoint IN ('echo-a', 'echo-b')") >= 6 + 3
    assert count(db, "SELECT COUNT(*) FROM llm_calls WHERE status != 'ok'") == 0


def test_the_plugins_own_check_refuses_its_config(
    echo_installed: None, tmp_path: Path, run_cli: Callable[..., CliResult]
) -> None:
    config = tmp_path / "run.toml"
    config.write_text('[generation]\nmodel = "mine"\n[models.mine]\nbackend = "echo"\n'
                      'endpoints = [" "]\n', encoding="utf-8")

    code, _out, err = run_cli("run", "--headless", "--config", config,
                              "--db", tmp_path / "x.db")

    assert code == 2
    assert "[models.mine].endpoints must not hold an empty name for backend echo" in err
    assert not (tmp_path / "x.db").exists()
