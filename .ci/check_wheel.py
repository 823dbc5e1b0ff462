"""The release as a stranger meets it: build the sdist and the wheel, install the wheel into a
new virtualenv, and use it from an empty folder.

Run by `make test` (through `make wheel-check`). It fails when:
- any module or data file of the source tree is missing from the wheel (a hand-kept
  package list once shipped a wheel that died on import),
- the wheel does not install, or the installed tool cannot start, prepare the bundled
  sample, report on it, export it, or import the app.
The wheel is built from the sdist, so a file the sdist leaves out fails here too. Nothing
needs a local model, and pip's cache makes the install a matter of unpacking.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "visinstruct"
# Folders of the repository that are not part of the installed product.
NOT_THE_PRODUCT = {"tests", "benchmarks", "docs", "build", "dist", "out", "data"}
SAMPLE_IMAGES = 24  # the bundled sample's images


def fail(message: str) -> None:
    print(f"check_wheel: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command, echo it, and fail with its output when it fails."""
    print("$ " + " ".join(command), flush=True)
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"{' '.join(command)} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done.stdout


def source_files() -> list[str]:
    """Every file the product is made of, as a path inside the package."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True)
    if listed.returncode == 0:
        paths = [Path(line) for line in listed.stdout.splitlines() if line]
    else:  # not a git checkout (an unpacked sdist): walk the tree
        paths = [p.relative_to(ROOT) for p in ROOT.rglob("*") if p.is_file()]
    files = []
    for path in paths:
        top = path.parts[0]
        if len(path.parts) == 1:
            if path.suffix == ".py" and path.name != "setup.py":
                files.append(path.as_posix())  # __init__.py, __main__.py
            continue
        if top.startswith(".") or top in NOT_THE_PRODUCT or "__pycache__" in path.parts:
            continue
        if (ROOT / path).exists():
            files.append(path.as_posix())
    return sorted(files)


def check_contents(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        inside = {name for name in archive.namelist() if name.startswith(f"{PACKAGE}/")}
    wanted = {f"{PACKAGE}/{path}" for path in source_files()}
    missing = sorted(wanted - inside)
    if missing:
        fail("the wheel lacks files of the source tree (is a folder missing its "
             "__init__.py, or a data file its package-data pattern?):\n  " + "\n  ".join(missing))
    strays = sorted(name for name in inside - wanted if not name.endswith(".pyc"))
    if strays:
        fail("the wheel holds files that are not part of the product:\n  " + "\n  ".join(strays))
    print(f"wheel holds all {len(wanted)} files of the source tree and nothing else")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="visinstruct-wheel-"))
    try:
        dist = work / "dist"
        # The build goes through pip's cache; `build` makes the sdist, then the wheel from it.
        run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], cwd=work)
        wheels = sorted(dist.glob(f"{PACKAGE}-*.whl"))
        sdists = sorted(dist.glob(f"{PACKAGE}-*.tar.gz"))
        if len(wheels) != 1 or len(sdists) != 1:
            fail(f"expected one wheel and one sdist in {dist}, found {wheels + sdists}")
        check_contents(wheels[0])

        env_dir = work / "venv"
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
        python = env_dir / "bin" / "python"
        tool = env_dir / "bin" / "visinstruct"
        run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             str(wheels[0])], cwd=work)

        empty = work / "empty"
        empty.mkdir()
        clean_env = {key: value for key, value in os.environ.items()
                     if key not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
        version = run([str(tool), "--version"], cwd=empty, env=clean_env).strip()
        from_module = run([str(python), "-m", PACKAGE, "--version"], cwd=empty,
                          env=clean_env).strip()
        if version != from_module or not version.startswith(f"{PACKAGE} "):
            fail(f"--version said {version!r}, python -m {PACKAGE} said {from_module!r}")
        print(version)
        run([str(tool), "prepare", "--db", "s.db"], cwd=empty, env=clean_env)
        status = json.loads(run([str(tool), "status", "--db", "s.db", "--json"], cwd=empty,
                                env=clean_env))
        if status.get("images") != SAMPLE_IMAGES:
            fail(f"status --json gave images={status.get('images')!r}, "
                 f"expected the bundled sample's {SAMPLE_IMAGES}")
        run([str(tool), "export", "--db", "s.db", "--format", "llava", "--out", "out.json"],
            cwd=empty, env=clean_env)
        if not isinstance(json.loads((empty / "out.json").read_text()), list):
            fail("export did not write a JSON list")
        where = run([str(python), "-c", "import visinstruct, visinstruct.tui.app; "
                     "print(visinstruct.__file__)"], cwd=empty, env=clean_env).strip()
        if not where.startswith(str(env_dir)):
            fail(f"the app was imported from {where}, not from the installed wheel")
        print(f"installed wheel {wheels[0].name}: --version, prepare, status --json "
              f"({SAMPLE_IMAGES} images), export and the app import all work from an empty folder")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
