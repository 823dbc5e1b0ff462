"""Helpers of the Bedrock batch tests: one test's fakes, a config, the store, the CLI's output."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fakes.bedrock_batch_server import BatchControlPlane
from tests.fakes.bedrock_server import BedrockServer
from visinstruct.dataset import sample

MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
BUCKET = "visinstruct-batch"
ROLE = "arn:aws:iam::123456789012:role/BedrockBatch"
RunCli = Callable[..., tuple[int, str, str]]


class Aws:
    """The fakes of one test: the batch control plane, the on-demand runtime, the env vars."""

    def __init__(self, plane: BatchControlPlane, runtime: BedrockServer, env: dict[str, str]):
        self.plane = plane
        self.runtime = runtime
        self.env = env


def write_config(tmp_path: Path, name: str = "run", *, backend: str = "bedrock-batch",
                 limit: int = 4, extra: str = "") -> Path:
    """Generation and judging on one Claude model, batch or online; same prompts either way."""
    batch = (f's3_uri = "s3://{BUCKET}/jobs/"\nrole_arn = "{ROLE}"\npoll_seconds = 0.01\n'
             if backend == "bedrock-batch" else "")
    config = tmp_path / f"{name}.toml"
    config.write_text(f"""db = "{tmp_path / (name + '.db')}"
[source]
coco_captions = "{sample.captions_path()}"
coco_instances = "{sample.instances_path()}"
limit = {limit}
[generation]
model = "claude"
[judge]
model = "claude"
threshold = 7
[models.claude]
backend = "{backend}"
model_id = "{MODEL_ID}"
price_in_per_million = 0.125
price_out_per_million = 0.625
attempts = 2
{batch}{extra}""")
    return config


def db_of(config: Path) -> Path:
    return config.with_suffix(".db")


def rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def exported(run_cli: RunCli, db: Path, out: Path) -> list[Any]:
    code, _, err = run_cli("export", "--db", db, "--format", "llava", "--out", out)
    assert code == 0, err
    return json.loads(out.read_text())


def status(run_cli: RunCli, db: Path) -> dict[str, Any]:
    code, out, err = run_cli("status", "--db", db, "--json")
    assert code == 0, err
    return json.loads(out)
