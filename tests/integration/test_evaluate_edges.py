"""`evaluate` at its edges: sampling, refusals, failing evaluators, the table, Ctrl-C, vision."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.aws import aws_env_vars
from tests.fakes.bedrock_server import BedrockServer
from tests.fakes.scripting import Fail, RecordedRequest, Reply
from tests.integration.test_evaluate import (  # noqa: F401 - the `fake` and `scenario` fixtures
    EXPECTED_OVERALL,
    MODEL_ID,
    TASKS,
    A,
    B,
    C,
    D,
    build_store,
    fake_fixture,
    figures,
    run,
    scenario_fixture,
    scripted,
    stored,
    write_config,
)
from visinstruct.core.config import Config, ModelConfig, load_config, sees_images
from visinstruct.core.errors import InputError
from visinstruct.core.events import EvaluationNotice, Event


def test_a_seeded_sample_and_a_sample_larger_than_what_exists(
        tmp_path: Path, fake: BedrockServer) -> None:
    build_store(tmp_path / "store.db", tmp_path, ours=[A, B, C, D], baseline=[A, B, C, D])
    config = load_config(write_config(tmp_path, sample=2, seed=5))

    report = run(config)

    # sorted(random.Random(5).sample([353536, 441147, 506095, 514915], 2))
    assert stored(config.db, "SELECT DISTINCT image_id FROM evaluations ORDER BY 1") == [
        (C,), (D,)]
    assert (report.images, report.units, report.verdicts) == (2, 6, 12)
    assert report.notices == ()

    events: list[Event] = []
    larger = run(config, events, sample=10)

    assert (larger.images, larger.verdicts) == (4, 24)
    assert fake.script.count(MODEL_ID) == 24
    notes = [e.message for e in events if isinstance(e, EvaluationNotice)]
    assert notes == [("asked for 10 images but only 4 have both a kept conversation and a "
                     "baseline conversation of the same task; comparing all 4")]


def test_no_baseline_for_our_images_is_refused_with_exit_2(
        tmp_path: Path, fake: BedrockServer, run_cli: Callable[..., Any]) -> None:
    build_store(tmp_path / "store.db", tmp_path, ours=[A, B], baseline=[C])
    write_config(tmp_path)

    code, out, err = run_cli("evaluate", "--config", tmp_path / "run.toml", "--json")

    assert code == 2
    assert out == ""
    assert "no image has both a kept conversation and a baseline conversation" in err
    assert "visinstruct prepare --baseline" in err
    assert fake.script.count() == 0
    with pytest.raises(InputError):
        run(load_config(tmp_path / "run.toml"))


def test_an_evaluator_that_always_fails_is_counted_and_nothing_is_lost(
        scenario: Config, fake: BedrockServer, run_cli: Callable[..., Any],
        tmp_path: Path) -> None:
    fake.script.on(MODEL_ID, lambda request: Fail("AccessDeniedException", "no access"))

    code, out, err = run_cli("evaluate", "--config", tmp_path / "run.toml", "--json")

    assert code == 1
    result = json.loads(out)
    assert result["failed_calls"] == 18
    assert result["overall"]["n"] == 0 and result["overall"]["relative_score"] is None
    assert "18 call(s) failed" in err and "again to retry" in err

    fake.script.on(MODEL_ID, scripted)
    code, out, _ = run_cli("evaluate", "--config", tmp_path / "run.toml", "--json")

    assert code == 0
    assert figures(json.loads(out)["overall"]) == EXPECTED_OVERALL


def test_the_table_names_every_task_and_the_overall_row(
        scenario: Config, run_cli: Callable[..., Any], tmp_path: Path) -> None:
    code, out, err = run_cli("evaluate", "--config", tmp_path / "run.toml")

    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["task", "n", "relative"]
    assert [line.split()[0] for line in lines[1:]] == [*TASKS, "overall"]
    assert lines[-1].split()[1:3] == ["7", "99.0"]  # worded as the app words it
    assert "3 images" in err


def test_ctrl_c_stops_the_command_with_exit_3_and_keeps_what_finished(
        scenario: Config, fake: BedrockServer, tmp_path: Path) -> None:
    arrived = threading.Event()

    def slow(request: RecordedRequest) -> Reply:
        arrived.set()
        return Reply(scripted(request).text, latency_s=0.3)

    fake.script.on(MODEL_ID, slow)
    process = subprocess.Popen(
        [sys.executable, "-m", "visinstruct.core.cli", "evaluate", "--config",
         str(tmp_path / "run.toml"), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **aws_env_vars(bedrock_url=fake.url)})
    try:
        assert arrived.wait(timeout=30), "the evaluator was never called"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()

    assert process.returncode == 3, err
    assert "what was compared is saved" in err
    assert json.loads(out)["status"] == "interrupted"
    done = len(stored(scenario.db, "SELECT id FROM evaluations"))
    assert 1 <= done < 18
    assert fake.script.count(MODEL_ID) == done


@pytest.mark.parametrize(("backend", "model_id", "sees"), [
    ("bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0", True),
    ("bedrock", "anthropic.claude-3-haiku-20240307-v1:0", True),
    ("bedrock", "us.anthropic.claude-sonnet-4-20250514-v1:0", True),
    ("bedrock", "anthropic.claude-v2:1", False),
    ("bedrock", "anthropic.claude-instant-v1", False),
    ("bedrock", "meta.llama3-70b-instruct-v1:0", False),
    ("bedrock", "meta.llama3-2-90b-instruct-v1:0", False),  # InvokeModel: Anthropic only
    ("openai", "claude-3-5-sonnet", False),
])
def test_the_evaluator_sees_by_its_models_vision_default(backend: str, model_id: str,
                                                         sees: bool) -> None:
    model = ModelConfig(name="judge", backend=backend, model_id=model_id)

    assert sees_images(model) is sees
