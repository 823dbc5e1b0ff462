"""Turning `vision` on for a store with data makes its units owed again under the vision
prompt versions: the start dialog's plan and `run --headless` say so before paying."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

from PIL import Image as PILImage

from visinstruct.core import pipeline
from visinstruct.core.config import load_config
from visinstruct.core.errors import ExitCode
from visinstruct.core.events import ignore
from visinstruct.core.pipeline.plan import plan_run
from visinstruct.core.store.database import Store
from visinstruct.dataset import sample

CliResult = tuple[int, str, str]
RunCli = Callable[..., CliResult]
LIMIT = 2  # images: 2 x 3 tasks = 6 units


def write_config(folder: Path, *, generator_sees: bool, judge_sees: bool) -> Path:
    """Scripted generator `gen` and judge `eye` on the sample, with a pictures folder holding
    the first images' pictures."""
    pictures = folder / "pictures"
    pictures.mkdir(exist_ok=True)
    for image_id in (990001, 990002):
        PILImage.new("RGB", (64, 48), (200, 20, 20)).save(pictures / f"000000{image_id}.jpg")
    script = folder / "script.json"
    script.write_text(json.dumps({"rules": []}), encoding="utf-8")
    path = folder / "run.toml"
    path.write_text(
        f'db = "{folder / "run.db"}"\n[source]\nlimit = {LIMIT}\n'
        f'coco_captions = "{sample.captions_path()}"\n'
        f'coco_instances = "{sample.instances_path()}"\nimages_dir = "{pictures}"\n'
        '[generation]\nmodel = "gen"\n[judge]\nmodel = "eye"\n'
        f'[models.gen]\nbackend = "scripted"\nscript = "{script}"\n'
        f"vision = {str(generator_sees).lower()}\n"
        f'[models.eye]\nbackend = "scripted"\nscript = "{script}"\n'
        f"vision = {str(judge_sees).lower()}\n", encoding="utf-8")
    return path


def run_once(path: Path) -> None:
    config = load_config(path)
    with Store(config.db) as store:
        assert pipeline.run(config, store, ignore, threading.Event()).status == "finished"


def plan_text(path: Path) -> str:
    config = load_config(path)
    with Store(config.db) as store:
        return plan_run(config, store).describe()


def test_the_plan_says_which_units_are_made_again_and_why(tmp_path: Path) -> None:
    blind = write_config(tmp_path, generator_sees=False, judge_sees=False)
    run_once(blind)
    assert "again" not in plan_text(blind)  # nothing changed: nothing owed again

    seeing = write_config(tmp_path, generator_sees=True, judge_sees=False)
    text = plan_text(seeing)
    assert "6 of 6 units left" in text
    assert ("6 units will be generated again because the prompt version changed "
            "(vision on).") in text

    judge_only = write_config(tmp_path, generator_sees=False, judge_sees=True)
    assert ("6 units will be judged again because the judge's prompt version changed "
            "(vision on).") in plan_text(judge_only)

    run_once(seeing)  # made again with the vision versions; the text ones stay in the store
    assert "again" not in plan_text(blind) and "again" not in plan_text(seeing)

    # A store made with vision on first: turning it off is said the same way.
    first = tmp_path / "seeing-first"
    first.mkdir()
    run_once(write_config(first, generator_sees=True, judge_sees=True))
    text = plan_text(write_config(first, generator_sees=False, judge_sees=False))
    assert ("6 units will be generated again because the prompt version changed "
            "(vision off).") in text


def test_run_headless_says_it_on_stderr_and_runs(run_cli: RunCli, tmp_path: Path) -> None:
    blind = write_config(tmp_path, generator_sees=False, judge_sees=False)
    run_once(blind)
    seeing = write_config(tmp_path, generator_sees=True, judge_sees=False)
    code, out, err = run_cli("run", "--headless", "--json", "--config", seeing)
    assert code == ExitCode.OK, err
    assert ("6 units will be generated again because the prompt version changed "
            "(vision on).") in err.splitlines()
    assert all(json.loads(line) for line in out.splitlines())  # stdout stays JSON events
    code, _out, err = run_cli("run", "--headless", "--config", seeing)
    assert code == ExitCode.OK and "again" not in err  # made now: nothing owed again
