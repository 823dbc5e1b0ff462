"""Secrets from the environment and the config never reach the store, stdout, stderr or exports,
even when the servers echo the request headers in their errors."""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote

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


# Credentials sent every way the tool sends them: SigV4 with keys from a credentials file (not
# the environment), Basic from the user info of a base URL (its password percent-encoded), and
# a Bearer key. Each server echoes what it was sent, in many encodings, in its errors (401 on
# the OpenAI wire) and inside the text of its good replies.
FILE_KEYS = {
    "aws_access_key_id": "ASIAZXCVBNMLKJHGFDSA",
    "aws_secret_access_key": "sEcReT/FromTheCredentialsFile+0123456789abcd",
    "aws_session_token": "IQoJb3JpZ2luX2VjEFILE/token+with=signs0987654321",
}
BASIC_USER, BASIC_PASSWORD = "reader", "pa%40ss%2Fword%20xyz"  # as written in the URL
BEARER_KEY = "sk-bearer-echoed-key-5432109876"


def lower_hex(quoted: str) -> str:
    """Percent-encoding with lower-case hex digits, as some servers write it."""
    return re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), quoted)


def encodings(value: str) -> set[str]:
    """`value` in every form a server might echo it."""
    forms = {value, unquote(value)}
    for form in list(forms):
        encoded = base64.b64encode(form.encode()).decode()
        forms |= {encoded, encoded.rstrip("=")}
    for form in list(forms):
        quoted = quote(form, safe="")
        forms |= {quoted, lower_hex(quoted), quote_plus(form), form.replace("/", "\\/"),
                  json.dumps(form)[1:-1]}
    return {form for form in forms if len(form) >= 6}


ALL_SECRETS = [FILE_KEYS["aws_secret_access_key"], FILE_KEYS["aws_session_token"],
               BASIC_PASSWORD, f"{BASIC_USER}:{BASIC_PASSWORD}", BEARER_KEY]


def found_secrets(text: str | bytes) -> list[str]:
    """Every form of every secret found in `text` (text or file bytes)."""
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    return sorted({form for secret in ALL_SECRETS for form in encodings(secret)
                   if form.encode() in data})


def echo_of(request: RecordedRequest) -> str:
    """The credentials a request carried, echoed plain, decoded and encoded."""
    parts = []
    for name, value in request.headers.items():
        if name.lower() not in ("authorization", "x-amz-security-token"):
            continue
        token = value.split(" ", 1)[1] if value.startswith(("Basic ", "Bearer ")) else value
        parts += [f"{name}: {value}", quote(value, safe=""), lower_hex(quote(token, safe="")),
                  base64.b64encode(token.encode()).decode(), f"token={token}"]
        if value.startswith("Basic "):
            user_info = base64.b64decode(token).decode()
            parts += [user_info, user_info.split(":", 1)[1], quote(user_info, safe="")]
    return " | ".join(parts)


def echo_in_reply(request: RecordedRequest) -> str:
    """A good reply whose first answer (or every reason) carries the echo."""
    document = json.loads(reply_to_request(request))
    echo = f"you sent {echo_of(request)}"
    if "pairs" in document:
        document["pairs"][0]["answer"] += f" ({echo})"
    for score in document.get("scores", []):
        score["reason"] = echo
    return json.dumps(document)


def echo_every(every: int, status_class: str) -> Any:
    counter = itertools.count(1)

    def source(request: RecordedRequest) -> Behaviour:
        if next(counter) % every:
            return Reply(text=echo_in_reply)
        echoed = f"denied: {echo_of(request)} headers={json.dumps(dict(request.headers))}"
        return Fail(status_class, echoed, original_status=401)
    return source


@pytest.mark.timeout(300)
def test_no_secret_in_any_form_reaches_any_file_or_stream(tmp_path: Path) -> None:
    sagemaker_script, basic_script, bearer_script = Script(), Script(), Script()
    sagemaker_script.on("*", echo_every(3, "ModelError"))
    basic_script.on("*", echo_every(4, "Unauthorized"))
    bearer_script.on("*", echo_every(4, "Unauthorized"))
    credentials = tmp_path / "aws-credentials"
    credentials.write_text("[default]\n" + "".join(f"{k} = {v}\n" for k, v in FILE_KEYS.items()))
    with SageMakerServer(sagemaker_script, endpoints=("mixtral-a",)) as sagemaker, \
            OpenAIServer(basic_script, models=("basic-model",)) as basic, \
            OpenAIServer(bearer_script, models=("bearer-model",), api_key=BEARER_KEY) as bearer:
        db = tmp_path / "run.db"
        config = tmp_path / "run.toml"
        basic_host = basic.url.removeprefix("http://")
        config.write_text(f"""db = "{db}"
[source]
coco_captions = "{sample.captions_path()}"
limit = 4
[generation]
model = "mixtral"
[judge]
models = ["basic", "bearer"]
threshold = 1
[models.mixtral]
backend = "sagemaker"
endpoints = ["mixtral-a"]
attempts = 2
probe_seconds = 0.05
[models.basic]
backend = "openai"
base_url = "http://{BASIC_USER}:{BASIC_PASSWORD}@{basic_host}/v1"
model = "basic-model"
attempts = 2
probe_seconds = 0.05
[models.bearer]
backend = "openai"
base_url = "{bearer.url}/v1"
model = "bearer-model"
api_key_env = "ECHO_TEST_BEARER"
attempts = 2
probe_seconds = 0.05
""")
        env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
        env.update(aws_env_vars(sagemaker_url=sagemaker.url), NO_COLOR="1",
                   AWS_SHARED_CREDENTIALS_FILE=str(credentials), ECHO_TEST_BEARER=BEARER_KEY)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            env.pop(name)  # the keys come from the credentials file only

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "visinstruct.core.cli", *args],
                                  capture_output=True, text=True, timeout=240, cwd=tmp_path,
                                  env=env, check=False)

        results = [cli("run", "--headless", "--json", "--config", str(config)),
                   cli("run", "--headless", "--config", str(config))]
        out, report, copy = tmp_path / "out.jsonl", tmp_path / "report", tmp_path / "copy.db"
        results += [cli("export", "--format", "jsonl", "--db", str(db), "--out", str(out)),
                    cli("analyze", "--config", str(config), "--db", str(db), "--out",
                        str(report)),
                    cli("backup", "--db", str(db), "--out", str(copy)),
                    cli("status", "--json", "--db", str(db)),
                    cli("status", "--db", str(db))]
    sent = json.dumps([dict(r.headers) for script in (sagemaker_script, basic_script,
                                                       bearer_script) for r in script.requests()])
    for secret in (FILE_KEYS["aws_session_token"], BEARER_KEY,
                   base64.b64encode(f"{BASIC_USER}:{unquote(BASIC_PASSWORD)}".encode()).decode()):
        assert secret in sent, f"{secret} was never sent: the test proves nothing"
    with sqlite3.connect(db) as conn:
        echoed_ok = conn.execute("SELECT count(*) FROM llm_calls WHERE status = 'ok' "
                                 "AND raw_response LIKE '%you sent%'").fetchone()[0]
        echoed_401 = conn.execute("SELECT count(*) FROM llm_calls WHERE error LIKE '%denied%'"
                                  " AND error_class = 'Unauthorized'").fetchone()[0]
        kept = conn.execute("SELECT count(*) FROM generations WHERE raw LIKE '%you sent%'"
                            ).fetchone()[0]
    assert echoed_ok and echoed_401 and kept, "the echoes never reached the store"
    for result in results[2:5]:
        assert result.returncode == 0, result.stderr
    assert any('"error"' in r.stdout and "CallFinished" in r.stdout for r in results)
    assert found_secrets("\n".join(t for r in results for t in (r.stdout, r.stderr))) == []
    files = [db, copy, out, *sorted(p for p in report.rglob("*") if p.is_file()),
             *tmp_path.glob("run.db-*")]
    assert report.exists() and len(files) > 4
    for path in files:
        assert found_secrets(path.read_bytes()) == [], path
