"""`visinstruct run --headless` end to end over the real wires against the loopback fakes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.fakes.aws import aws_env_vars
from tests.fakes.model_replies import reply_to_request
from tests.fakes.openai_server import OpenAIServer
from tests.fakes.sagemaker_server import SageMakerServer
from tests.fakes.scripting import Capacity, Reply, Script
from visinstruct.dataset import sample

REPO = Path(__file__).resolve().parents[2]
SOURCE = f"""
[source]
coco_captions = "{sample.captions_path()}"
coco_instances = "{sample.instances_path()}"
limit = 8
"""


def run_headless(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "visinstruct.core.cli", "run", "--headless", "--json",
         "--config", str(config)],
        capture_output=True, text=True, timeout=240, cwd=REPO, env={**os.environ, **env})


def ledger(db: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT key, status, COALESCE(error_kind, '') FROM llm_calls").fetchall()


@pytest.mark.timeout(300)
def test_sagemaker_fleet_with_throttling(tmp_path: Path) -> None:
    # Each endpoint serves 2 at a time with a queue of 1: the pool's opening in-flight limit
    # of 4 is over capacity, so the run meets real ThrottlingExceptions and must back off.
    script = Script(Reply(text=reply_to_request),
                    capacity=Capacity(instances=1, per_instance=2, base_latency_s=0.02, queue=1))
    with SageMakerServer(script, endpoints=("mixtral-a", "mixtral-b")) as server:
        db = tmp_path / "run.db"
        config = tmp_path / "run.toml"
        config.write_text(f"""db = "{db}"
{SOURCE}
[generation]
model = "mixtral"
[judge]
model = "mixtral"
[models.mixtral]
backend = "sagemaker"
endpoints = ["mixtral-a", "mixtral-b"]
schema = "tgi"
max_in_flight = 8
read_timeout = 10
""")
        result = run_headless(config, aws_env_vars(sagemaker_url=server.url))
        assert result.returncode == 0, result.stderr[-3000:]
        events = [json.loads(line) for line in result.stdout.splitlines()]
        finished = events[-1]
        assert finished["event"] == "RunFinished" and finished["status"] == "finished"
        assert finished["done_units"] == finished["total_units"] == 8 * 3
        assert finished["failed_units"] == 0
        rows = ledger(db)
        throttled = sum(1 for _, status, kind in rows if kind == "backpressure")
        assert throttled > 0, "the fleet never pushed back: the test proves nothing"
        assert throttled == sum(script.throttled(e) for e in ("mixtral-a", "mixtral-b"))
        # Every request that reached the fleet is a ledger row: botocore retried nothing itself.
        assert len(rows) == script.count()
        ok = Counter(key for key, status, _ in rows if status == "ok")
        assert ok and max(ok.values()) == 1, "a finished call was sent twice"
        assert {e for e in ("mixtral-a", "mixtral-b") if script.count(e)} == {"mixtral-a",
                                                                              "mixtral-b"}
        health = [e for e in events if e["event"] == "EndpointHealth"]
        assert {e["endpoint"] for e in health} == {"mixtral-a", "mixtral-b"}
        assert any(e["throttles"] > 0 for e in health)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM pair_state").fetchone()[0] > 0
        assert conn.execute("SELECT COUNT(*) FROM generations WHERE status = 'parse_failure'"
                            ).fetchone()[0] == 0


@pytest.mark.timeout(300)
def test_openai_compatible_server(tmp_path: Path) -> None:
    script = Script(Reply(text=reply_to_request))
    with OpenAIServer(script, models=("local-mixtral",), api_key="sk-test-secret") as server:
        db = tmp_path / "run.db"
        config = tmp_path / "run.toml"
        config.write_text(f"""db = "{db}"
{SOURCE}
[generation]
model = "served"
[judge]
model = "served"
[models.served]
backend = "openai"
base_url = "{server.url}/v1"
model = "local-mixtral"
api_key_env = "VISINSTRUCT_TEST_KEY"
max_in_flight = 4
""")
        result = run_headless(config, {"VISINSTRUCT_TEST_KEY": "sk-test-secret"})
        assert result.returncode == 0, result.stderr[-3000:]
        finished = json.loads(result.stdout.splitlines()[-1])
        assert finished["status"] == "finished" and finished["done_units"] == 24
        assert script.count() == finished["calls"] == 48
        body = script.bodies()[0]
        assert body["model"] == "local-mixtral" and "response_format" in body
    with sqlite3.connect(db) as conn:
        raw = " ".join(r[0] or "" for r in conn.execute("SELECT error FROM llm_calls"))
    assert "sk-test-secret" not in raw + result.stdout + result.stderr


@pytest.mark.timeout(300)
def test_an_endpoint_that_dies_and_comes_back(tmp_path: Path) -> None:
    from tests.fakes.scripting import Dead, Fail

    # Five failures in a row take it out of rotation; probes every 0.3 s find it dead three
    # more times, then alive: it must serve again before the run (about 3 s) is over.
    script = Script(Reply(text=reply_to_request, latency_s=0.05))
    script.push("mixtral-a", Dead(8, Fail("InternalFailure")))
    with SageMakerServer(script, endpoints=("mixtral-a", "mixtral-b")) as server:
        db = tmp_path / "run.db"
        config = tmp_path / "run.toml"
        config.write_text(f"""db = "{db}"
{SOURCE.replace("limit = 8", "limit = 24")}
[generation]
model = "mixtral"
[judge]
model = "mixtral"
[models.mixtral]
backend = "sagemaker"
endpoints = ["mixtral-a", "mixtral-b"]
max_in_flight = 4
probe_seconds = 0.3
read_timeout = 10
""")
        result = run_headless(config, aws_env_vars(sagemaker_url=server.url))
        assert result.returncode == 0, result.stderr[-3000:]
        finished = json.loads(result.stdout.splitlines()[-1])
        assert finished["done_units"] == finished["total_units"] == 72
        assert finished["failed_units"] == 0
        assert script.count("mixtral-a") > 8, "the endpoint was never probed back"
        health = [json.loads(line) for line in result.stdout.splitlines()
                  if '"EndpointHealth"' in line]
        assert any(e["endpoint"] == "mixtral-a" and e["health"] == "down" for e in health)
    with sqlite3.connect(db) as conn:
        served_after = conn.execute(
            "SELECT COUNT(*) FROM llm_calls WHERE endpoint = 'mixtral-a' AND status = 'ok'"
        ).fetchone()[0]
        transient = conn.execute(
            "SELECT COUNT(*) FROM llm_calls WHERE endpoint = 'mixtral-a' AND "
            "error_kind = 'transient'").fetchone()[0]
    assert transient == 8 and served_after > 0
