"""Helpers for the review, prompt lab and evaluation screen tests: a real store, the app,
waiting."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from visinstruct.core import pipeline
from visinstruct.core.config import load_config
from visinstruct.core.evaluation.evaluate import evaluate
from visinstruct.core.events import ignore
from visinstruct.core.store.database import Store
from visinstruct.dataset import sample
from visinstruct.tui.app import VisinstructApp
from visinstruct.tui.context import AppContext
from visinstruct.tui.screens.evaluation import EvaluationScreen
from visinstruct.tui.screens.prompt_lab import PromptLabScreen
from visinstruct.tui.screens.review import ReviewScreen

SIZE = (120, 40)
SMALL = (80, 24)
SAMPLES = 24 * 3
PARSE_FAILURE = (990002, "conversation")   # the scripted model garbles this one
UNJUDGED_IMAGE = 990003                    # and gives no readable score for this image's pairs
# Rules for the scripted model, matched against the request's tag and its last message.
RULES: tuple[dict[str, Any], ...] = (
    {"match": r"^generate:conversation\n.*frisbee", "reply": "I would rather not say."},
    {"match": r"^judge:\d+\n.*double decker", "reply": "No scores today."},
)


def write_config(folder: Path, *, rules: Sequence[dict[str, Any]] = RULES,
                 images_dir: Path | None = None, max_in_flight: int = 4) -> Path:
    """A config on the bundled sample (with its baseline) where one scripted model does
    everything."""
    script = folder / "script.json"
    script.write_text(json.dumps({"rules": list(rules)}), encoding="utf-8")
    source = (f'coco_captions = "{sample.captions_path()}"\n'
              f'coco_instances = "{sample.instances_path()}"\n'
              f'baseline = "{sample.baseline_path()}"\n')
    if images_dir is not None:
        source += f'images_dir = "{images_dir}"\n'
    config = folder / "run.toml"
    config.write_text(
        f'db = "{folder / "run.db"}"\n[source]\n{source}'
        '[generation]\nmodel = "fake"\n[judge]\nmodel = "fake"\nthreshold = 7\n'
        '[evaluation]\nmodel = "fake"\n'
        f'[models.fake]\nbackend = "scripted"\nscript = "{script}"\n'
        f"max_in_flight = {max_in_flight}\n",
        encoding="utf-8")
    return config


def build_store(config_path: Path, *, evaluated: bool = True) -> Path:
    """A real pipeline run to the end, then (optionally) a real evaluation with the scripted
    model."""
    config = load_config(config_path)
    with Store(config.db) as store:
        summary = pipeline.run(config, store, ignore, threading.Event())
        assert summary.status == "finished", summary
        if evaluated:
            evaluate(config, store, ignore)
    freeze_times(Path(config.db))
    return Path(config.db)


def freeze_times(db: Path) -> None:
    """Fixed clock columns, so screenshots and version order never change between runs."""
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET started_at = 1000.0, finished_at = 1012.0")
        conn.execute("UPDATE prompts SET created_at = 1000.0")
        conn.execute("UPDATE evaluations SET created_at = 1000.0 + id")
    conn.close()


def copy_built(built: Path, folder: Path) -> Path:
    """A copy of a built store and its config in `folder` (building once per module is faster)."""
    for name in ("run.db", "script.json"):
        shutil.copy(built / name, folder / name)
    text = (built / "run.toml").read_text(encoding="utf-8").replace(str(built), str(folder))
    (folder / "run.toml").write_text(text, encoding="utf-8")
    return folder / "run.toml"


def make_app(config_path: Path, **options: Any) -> VisinstructApp:
    config = load_config(config_path)
    return VisinstructApp(AppContext(config=config, db_path=Path(config.db),
                                     config_path=config_path), **options)


def query(db: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows straight from the store file, to check what the screens wrote."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(sql, params).fetchall()
    conn.close()
    return rows


async def wait_for(pilot: Pilot[Any], predicate: Callable[[], bool], what: str,
                   timeout: float = 20.0) -> None:
    """Let the app run until `predicate()` holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


async def settle(pilot: Pilot[Any], app: VisinstructApp) -> None:
    """Wait for every worker of the app and its screens to finish, then for the redraw."""
    deadline = time.monotonic() + 20
    while any(not w.is_finished for w in app.workers):
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the workers")
        await pilot.pause(0.02)
    await pilot.pause()


def screen_text(app: VisinstructApp) -> str:
    """The characters on screen now, one line per row."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def open_review(pilot: Pilot[Any]) -> ReviewScreen:
    """Press r and wait for the first page and its detail."""
    app = pilot.app
    await pilot.press("r")
    await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen), "the review screen")
    screen = app.screen
    assert isinstance(screen, ReviewScreen)
    await wait_for(pilot, lambda: bool(screen.table.row_count) and screen.pane.detail is not None,
                   "the first page and its detail")
    await settle(pilot, app)  # type: ignore[arg-type]
    return screen


async def open_lab(pilot: Pilot[Any]) -> PromptLabScreen:
    """Press p and wait for the saved prompt and its versions."""
    app = pilot.app
    await pilot.press("p")
    await wait_for(pilot, lambda: isinstance(app.screen, PromptLabScreen), "the lab screen")
    screen = app.screen
    assert isinstance(screen, PromptLabScreen)
    await wait_for(pilot, lambda: screen.saved is not None and bool(screen.editor.text),
                   "the saved prompt")
    await settle(pilot, app)  # type: ignore[arg-type]
    return screen


async def open_evaluation(pilot: Pilot[Any]) -> EvaluationScreen:
    """Press e and wait for the figures."""
    app = pilot.app
    await pilot.press("e")
    await wait_for(pilot, lambda: isinstance(app.screen, EvaluationScreen), "the screen")
    screen = app.screen
    assert isinstance(screen, EvaluationScreen)
    await wait_for(pilot, lambda: screen.overview is not None, "the figures")
    await settle(pilot, app)  # type: ignore[arg-type]
    return screen


# -- README screenshots ---------------------------------------------------------------------------
async def save_readme_screens(folder: Path, work: Path) -> list[Path]:
    """Review, prompt lab (after a trial) and evaluation at 120x40, as SVG, on a real store."""
    config = write_config(work, max_in_flight=1)
    build_store(config)
    app = make_app(config, frozen=True)
    folder.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    async with app.run_test(size=SIZE) as pilot:
        review = await open_review(pilot)
        await wait_for(pilot, lambda: review.total is not None, "the count")
        await pilot.press("down")
        await wait_for(pilot, lambda: review.pane.detail is not None
                       and review.pane.detail.task == "conversation", "the conversation")
        await settle(pilot, app)
        saved.append(Path(app.save_screenshot("review.svg", str(folder))))
        lab = await open_lab(pilot)
        lab.editor.load_text(lab.editor.text.replace("3 to 5 turns", "2 to 4 turns"))
        from textual.widgets import Input

        lab.query_one("#lab-images", Input).value = "990001, 990004, 990005"
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: lab.result is not None, "the trial", 120)
        await settle(pilot, app)
        saved.append(Path(app.save_screenshot("prompt_lab.svg", str(folder))))
        await open_evaluation(pilot)
        await settle(pilot, app)
        saved.append(Path(app.save_screenshot("evaluation.svg", str(folder))))
    return saved


if __name__ == "__main__":
    import asyncio
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screens")
        for path in asyncio.run(save_readme_screens(out, Path(scratch))):
            print(path)
