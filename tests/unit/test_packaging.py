"""Packaging: every runtime dependency declared in pyproject earns its place by an import."""

from __future__ import annotations

import ast
import re
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_FOLDERS = ("core", "dataset", "tui", "prompts")
# Distributions imported under another name than their own (read without the environment,
# so the check holds wherever it runs, installed or not).
IMPORT_NAMES = {"pillow": "PIL", "sqlite-utils": "sqlite_utils"}


def imported_top_levels() -> set[str]:
    """Top-level module names that the installed package's own code imports."""
    names: set[str] = set()
    for folder in PACKAGE_FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.split(".")[0])
    return names


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_runtime_dependency_is_imported_by_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {normalized(re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0])
                for spec in project["dependencies"]}
    imported = imported_top_levels()
    providers = packages_distributions()
    used = {normalized(dist) for module in imported for dist in providers.get(module, [])}
    # The same without the environment's metadata: the name itself, or its known import name.
    named = {dist for dist in declared
             if IMPORT_NAMES.get(dist, dist.replace("-", "_")) in imported}
    assert declared - used == set(), "declared in pyproject but imported nowhere"
    assert declared - named == set(), "declared in pyproject but imported nowhere"


def test_the_license_is_an_spdx_string() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "Apache-2.0"


def test_one_version_string_shown_by_the_command_and_the_module() -> None:
    import subprocess
    import sys

    import visinstruct

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "version" not in project and "version" in project["dynamic"]
    for command in (["-m", "visinstruct", "--version"],
                    ["-m", "visinstruct.core.cli", "--version"]):
        shown = subprocess.run([sys.executable, *command], capture_output=True, text=True,
                               cwd=ROOT.parent, check=True).stdout.strip()
        assert shown == f"visinstruct {visinstruct.__version__}"


def test_setup_finds_every_subpackage_of_the_source_tree() -> None:
    """Each folder with Python modules is a package, so setup.py's discovery ships it."""
    skipped = {"tests", "benchmarks", "docs", "build", "dist", "out"}
    without_init = [
        folder.relative_to(ROOT).as_posix()
        for folder in {path.parent for path in ROOT.rglob("*.py")}
        if folder != ROOT and not (folder / "__init__.py").is_file()
        and not ({part for part in folder.relative_to(ROOT).parts} & skipped)
        and not any(part.startswith(".") for part in folder.relative_to(ROOT).parts)
    ]
    assert without_init == [], "folders setup.py's find_packages would leave out of the wheel"


def test_the_entry_point_above_core_and_the_app_opens_the_app(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import argparse

    import visinstruct.tui.app
    from visinstruct import entry

    opened: list[argparse.Namespace] = []
    monkeypatch.setattr(visinstruct.tui.app, "main", lambda args: opened.append(args) or 0)
    assert entry.main(["--db", str(tmp_path / "s.db")]) == 0
    assert entry.main(["run", "--db", str(tmp_path / "s.db")]) == 0  # run without --headless
    assert [a.command for a in opened] == ["tui", "run"]


def test_core_names_the_app_nowhere_not_even_as_a_string() -> None:
    naming = [path.relative_to(ROOT).as_posix()
              for folder in ("core", "dataset") for path in (ROOT / folder).rglob("*.py")
              if "visinstruct.tui" in path.read_text(encoding="utf-8")]
    assert naming == []
