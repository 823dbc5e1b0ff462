"""`run --json` events in order: a unit's CallFinished (ok or failed) comes before its ImageDone,
also for a unit whose pairs every gate stopped and one whose call failed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from visinstruct.core.errors import ExitCode
from visinstruct.dataset import sample

CliResult = tuple[int, str, str]
RULES = [
    # Every detail answer is a refusal: its one pair is gated, nothing is judged.
    {"match": r"^generate:detail", "reply": "As an AI language model, I cannot see the image."},
    # Conversations about a frisbee fail for good.
    {"match": r"^generate:conversation\n.*frisbee", "error": "permanent"},
]


def test_each_units_calls_finish_before_the_unit(run_cli: Callable[..., CliResult],
                                                 tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"rules": RULES}), encoding="utf-8")
    config = tmp_path / "run.toml"
    config.write_text(
        f'db = "{tmp_path / "run.db"}"\n[source]\n'
        f'coco_captions = "{sample.captions_path()}"\n'
        f'coco_instances = "{sample.instances_path()}"\n'
        '[generation]\nmodel = "fake"\n[judge]\nmodel = "fake"\n'
        f'[models.fake]\nbackend = "scripted"\nscript = "{script}"\nmax_in_flight = 4\n'
        "attempts = 1\n", encoding="utf-8")
    code, out, err = run_cli("run", "--headless", "--json", "--config", config)
    assert code == ExitCode.FAILED, err  # the frisbee units failed
    events = [json.loads(line) for line in out.splitlines()]
    done_at: dict[tuple[int, str], int] = {}
    for position, event in enumerate(events):
        if event["event"] == "ImageDone":
            done_at[(event["image_id"], event["task"])] = position
    calls = [(position, e) for position, e in enumerate(events) if e["event"] == "CallFinished"]
    late = [(e["stage"], e["image_id"], e["task"], e["status"]) for position, e in calls
            if position > done_at[(e["image_id"], e["task"])]]
    assert late == []
    # The cases that used to come out of order are in this run.
    assert any(e["status"] == "error" for _, e in calls)
    details = {e["image_id"] for _, e in calls if e["task"] == "detail"}
    assert details and not any(e["stage"] == "judge" and e["task"] == "detail" for _, e in calls)
