"""Fixtures shared by the screen tests: one real store per test module, copied for each test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tui.support_screens import build_store, copy_built, write_config


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store made by a real scripted pipeline run and evaluation, built once per module."""
    folder = tmp_path_factory.mktemp("built")
    build_store(write_config(folder))
    return folder


@pytest.fixture
def config_path(built: Path, tmp_path: Path) -> Path:
    """This test's own copy of the built store and its config."""
    return copy_built(built, tmp_path)


@pytest.fixture(autouse=True)
def own_settings_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The app's settings (the theme) go to this test's folder, never the user's."""
    folder = tmp_path / "xdg-config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(folder))
    return folder
