"""Helpers for the app and monitor tests: configs, real pipeline stores, waiting on the app."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from visinstruct.core import pipeline
from visinstruct.core.config import load_config
from visinstruct.core.events import ignore
from visinstruct.core.store.database import Store
from visinstruct.dataset import sample
from visinstruct.tui.app import VisinstructApp
from visinstruct.tui.context import AppContext

SAMPLE_UNITS = 24 * 3  # the bundled sample: 24 images, three tasks each
SIZE = (120, 40)


def write_config(folder: Path, *, latency: float = 0.0, max_in_flight: int = 4,
                 rules: Sequence[dict[str, Any]] = (), threshold: float = 7,
                 model: str | None = None, name: str = "run") -> Path:
    """A run config on the bundled sample with the scripted model (or `model`, a TOML table)."""
    script = folder / f"{name}-script.json"
    script.write_text(json.dumps({"latency": latency, "rules": list(rules)}), encoding="utf-8")
    table = model or (f'[models.fake]\nbackend = "scripted"\nscript = "{script}"\n'
                      f"max_in_flight = {max_in_flight}\n")
    config = folder / f"{name}.toml"
    config.write_text(
        f'db = "{folder / (name + ".db")}"\n'
        "[source]\n"
        f'coco_captions = "{sample.captions_path()}"\n'
        f'coco_instances = "{sample.instances_path()}"\n'
        '[generation]\nmodel = "fake"\n'
        f'[judge]\nmodel = "fake"\nthreshold = {threshold}\n' + table,
        encoding="utf-8")
    return config


def context(config_path: Path, *, poll_seconds: float = 0.1) -> AppContext:
    config = load_config(config_path)
    return AppContext(config=config, db_path=Path(config.db), config_path=config_path,
                      poll_seconds=poll_seconds, chosen=True)


def make_app(config_path: Path, **options: Any) -> VisinstructApp:
    return VisinstructApp(context(config_path), **options)


def run_pipeline(config_path: Path) -> Path:
    """A real pipeline run, in this process, to the end; returns the store's path."""
    config = load_config(config_path)
    with Store(config.db) as store:
        summary = pipeline.run(config, store, ignore, threading.Event())
    assert summary.status == "finished", summary
    return Path(config.db)


def freeze_times(db: Path) -> None:
    """Give every clock column fixed values, so screenshots of the store never change."""
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET started_at = 1000.0, finished_at = 1012.0")
        conn.execute("UPDATE llm_calls SET started_at = 1000.0 + id * 0.01, "
                     "finished_at = 1000.5 + id * 0.01, latency_ms = 400 + (id * 37) % 900")
    conn.close()


def store_figures(db: Path, threshold: float = 7) -> dict[str, int]:
    """Counts straight from the tables, to compare with what the monitor shows."""
    with sqlite3.connect(db) as conn:
        judged = conn.execute("SELECT COUNT(*) FROM judgements").fetchone()[0]
        kept = conn.execute("SELECT COUNT(*) FROM judgements WHERE score >= ?",
                            (threshold,)).fetchone()[0]
        calls = conn.execute("SELECT COUNT(*) FROM llm_calls WHERE status = 'ok'").fetchone()[0]
        errors = conn.execute("SELECT COUNT(*) FROM llm_calls WHERE status = 'error'").fetchone()[0]
        status = conn.execute("SELECT status FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    conn.close()
    return {"judged": judged, "kept": kept, "ok_calls": calls, "errors": errors,
            "status": status[0] if status else ""}


async def wait_for(pilot: Pilot[Any], predicate: Callable[[], bool], what: str,
                   timeout: float = 30.0) -> None:
    """Let the app run until `predicate()` holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def press_start(pilot: Pilot[Any], app: VisinstructApp) -> None:
    """Press s, see what the run would do, and answer yes."""
    from visinstruct.tui.screens.dialogs import ConfirmDialog

    await pilot.press("s")
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the start question")
    await pilot.press("y")


def screen_text(app: VisinstructApp) -> str:
    """The characters on screen now, one line per row."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def wait_for_redraw(pilot: Pilot[Any], app: VisinstructApp, timeout: float = 10.0) -> None:
    """Wait until the monitor shows the RunState's latest version."""
    from visinstruct.tui.screens.monitor import MonitorScreen

    def drawn() -> bool:
        monitor = app.get_screen_stack("monitor")[0]
        return isinstance(monitor, MonitorScreen) and monitor.drawn_version == app.state.version

    await wait_for(pilot, drawn, "the monitor to redraw", timeout)
    await pilot.pause()


# -- the fake SageMaker fleet: replies shaped like a good Mixtral ---------------------------------
_PAIR_LINE = re.compile(r"^Pair (\d+)$", re.M)


def fleet_reply(request: Any) -> str:
    """A plausible answer to whatever the pipeline asked, read from the TGI prompt it sent."""
    prompt = str((request.json or {}).get("inputs", ""))
    digest = int(hashlib.sha256(prompt.encode()).hexdigest(), 16)
    numbers = _PAIR_LINE.findall(prompt)
    if numbers:
        scores = [{"index": int(n), "score": 5 + (digest >> (3 * i)) % 6, "reason": "fleet"}
                  for i, n in enumerate(numbers)]
        return json.dumps({"scores": scores})
    if '{"description"' in prompt:
        return json.dumps({"description": "A quiet street with a red bus and people waiting."})
    pairs = [{"question": f"What is happening in part {i + 1} of the picture?",
              "answer": "People are waiting beside a red bus on a quiet street."}
             for i in range(2 + digest % 3)]
    return json.dumps({"pairs": pairs})


def fleet_model(endpoints: Sequence[str] = ("a", "b")) -> str:
    """The [models.fake] table of a SageMaker model on the fake fleet."""
    names = ", ".join(f'"{e}"' for e in endpoints)
    return (f'[models.fake]\nbackend = "sagemaker"\nendpoints = [{names}]\nschema = "tgi"\n'
            'max_in_flight = 4\nread_timeout = 10.0\n')


# -- README screenshots ---------------------------------------------------------------------------
async def save_readme_screens(folder: Path, work: Path) -> list[Path]:
    """Monitor (part-way through a scripted run on two endpoints) and help, at 120x40, as SVG."""
    rules = [{"match": "^generate:detail", "error": "backpressure", "times": 3},
             {"match": "^judge:", "error": "transient", "times": 2}]
    script = work / "screens-script.json"  # not demo-script.json: write_config writes that one
    script.write_text(json.dumps({"latency": 0.25, "rules": rules}), encoding="utf-8")
    model = (f'[models.fake]\nbackend = "scripted"\nscript = "{script}"\n'
             'endpoints = ["mixtral-a", "mixtral-b"]\nmax_in_flight = 4\n'
             "price_in_per_million = 0.6\nprice_out_per_million = 0.6\n")
    app = make_app(write_config(work, model=model, name="demo"))
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    async with app.run_test(size=SIZE) as pilot:
        app.runs.start()
        await wait_for(pilot, lambda: app.state.done_units >= 40 and len(app.state.errors) >= 2,
                       "the demo run to be part-way", 60)
        await wait_for_redraw(pilot, app)
        saved.append(Path(app.save_screenshot("monitor.svg", str(folder))))
        app.action_help()
        await pilot.pause(0.3)
        saved.append(Path(app.save_screenshot("help.svg", str(folder))))
        app.pop_screen()
        app.stop_run()
        await wait_for(pilot, lambda: not app.run_active, "the demo run to stop", 60)
    return saved


if __name__ == "__main__":
    import asyncio
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        for path in asyncio.run(save_readme_screens(Path(sys.argv[1]), Path(scratch))):
            print(path)
