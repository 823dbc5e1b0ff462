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
