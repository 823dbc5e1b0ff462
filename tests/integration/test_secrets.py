"""Secrets from the environment and the config never reach the store, stdout, stderr or exports,
even when the servers echo the request headers in their errors."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError

from tests.fakes.aws import aws_env, aws_env_vars
from tests.fakes.model_replies import reply_to_request
from tests.fakes.openai_server import OpenAIServer
from tests.fakes.sagemaker_server import SageMakerServer
from tests.fakes.scripting import Behaviour, Fail, RecordedRequest, Reply, Script
from visinstruct.dataset import sample

REPO = Path(__file__).resolve().parents[2]
SECRETS = {
    "AWS_ACCESS_KEY_ID": "ASIAQWERTYUIOPASDFGH",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzSEEDEDKEY",
    "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEXAMPLE/seeded+session=TOKEN0123456789",
    "HF_TOKEN": "hf_SEEDEDhuggingfacetoken1234567890",
    "VISINSTRUCT_SERVED_KEY": "sk-seeded-openai-key-0123456789",
}
URL_PASSWORD = "Passw0rdInTheUrl"


def leaks(text: str) -> list[str]:
    """The seeded secrets (in any form a server might echo them) found in `text`."""
    found = []
    for value in [*SECRETS.values(), URL_PASSWORD]:
        for form in {value, quote(value, safe=""), value.replace("/", "\\/")}:
            if form in text:
                found.append(form)
    return found


def echoing(every: int) -> Any:
    """A behaviour source failing every `every`-th request with the request's headers echoed
    in the error message, and answering the others well."""
    counter = itertools.count(1)

    def source(request: RecordedRequest) -> Behaviour:
        if next(counter) % every:
            return Reply(text=reply_to_request(request))
        echoed = json.dumps(dict(request.headers))
        return Fail("ModelError" if request.operation.startswith("invocations") else "BadRequest",
                    f"request rejected; it carried {echoed}", original_status=400)
    return source


def dump(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return "\n".join(conn.iterdump())


@pytest.mark.timeout(300)
def test_secrets_never_reach_the_store_the_streams_or_the_exports(tmp_path: Path) -> None:
    sagemaker_script = Script()
    sagemaker_script.on("*", echoing(every=2))
    openai_script = Script()
    openai_script.on("*", echoing(every=3))
    with SageMakerServer(sagemaker_script, endpoints=("mixtral-a",)) as sagemaker, \
            OpenAIServer(openai_script, models=("served-model",),
                         api_key=SECRETS["VISINSTRUCT_SERVED_KEY"]) as served:
        host = served.url.removeprefix("http://")
        db = tmp_path / "run.db"
        config = tmp_path / "run.toml"
        config.write_text(f"""db = "{db}"
[source]
coco_captions = "{sample.captions_path()}"
limit = 4
[generation]
model = "mixtral"
[judge]
model = "served"
threshold = 1
[models.mixtral]
backend = "sagemaker"
endpoints = ["mixtral-a"]
attempts = 2
probe_seconds = 0.05
[models.served]
backend = "openai"
base_url = "http://reader:{URL_PASSWORD}@{host}/v1"
model = "served-model"
api_key_env = "VISINSTRUCT_SERVED_KEY"
attempts = 2
probe_seconds = 0.05
""")
        env = {**os.environ, **aws_env_vars(sagemaker_url=sagemaker.url), **SECRETS,
               "NO_COLOR": "1"}

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "visinstruct.core.cli", *args],
                                  capture_output=True, text=True, timeout=240, cwd=tmp_path,
                                  env=env, check=False)

        runs = [cli("run", "--headless", "--json", "--config", str(config)),
                cli("run", "--headless", "--config", str(config))]
        out = tmp_path / "llava.jsonl"
        exported = cli("export", "--format", "jsonl", "--db", str(db), "--out", str(out))
        status = cli("status", "--json", "--db", str(db))
    echoed = [r for r in sagemaker_script.requests() + openai_script.requests()]
    assert any(SECRETS["AWS_SESSION_TOKEN"] in json.dumps(dict(r.headers)) for r in echoed), \
        "the fakes never saw the secrets: the test proves nothing"
    with sqlite3.connect(db) as conn:
        errors = [r[0] for r in conn.execute("SELECT error FROM llm_calls WHERE status = 'error'")]
    assert errors and any("Authorization" in e or "authorization" in e for e in errors)
    assert exported.returncode == 0, exported.stderr
    streams = [text for r in (*runs, exported, status) for text in (r.stdout, r.stderr)]
    assert any("CallFinished" in s and '"error"' in s for s in streams)
    assert leaks(dump(db)) == []
    assert leaks("\n".join(streams)) == []
    assert leaks(out.read_text(encoding="utf-8")) == []


def test_deploy_never_prints_the_token_a_failed_create_model_echoes(
        run_cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    aws_env(monkeypatch)
    token = SECRETS["HF_TOKEN"]
    monkeypatch.setenv("HF_TOKEN", token)

    class EchoingClient:
        """SageMaker whose CreateModel fails echoing the container environment it was sent."""

        def __getattr__(self, operation: str) -> Any:
            def call(**request: Any) -> Any:
                if operation.startswith("describe_"):
                    raise ClientError({"Error": {"Code": "ValidationException",
                                                 "Message": "Could not find it"}}, operation)
                raise ClientError({"Error": {"Code": "ValidationException", "Message":
                                             f"bad request {json.dumps(request)}"}}, operation)
            return call

    monkeypatch.setattr("visinstruct.core.cli.deploy.sagemaker_client",
                        lambda region: EchoingClient())
    code, out, err = run_cli("deploy", "--name", "mixtral-test", "--role",
                             "arn:aws:iam::123456789012:role/x", "--no-wait")
    assert code != 0 and "ValidationException" in err
    assert "Environment" in err, "the error no longer echoes the request: the test proves nothing"
    assert token not in out + err
