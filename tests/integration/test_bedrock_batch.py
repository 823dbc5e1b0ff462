"""Runs through Bedrock batch jobs against moto's S3 (server mode) and the loopback control plane."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from visinstruct.dataset import sample
from tests.fakes.aws import aws_env, aws_env_vars
from tests.fakes.bedrock_batch_server import BatchControlPlane
from tests.fakes.bedrock_server import BedrockServer
from tests.fakes.model_replies import reply_to_request
from tests.fakes.scripting import Reply, Script

REPO = Path(__file__).resolve().parents[2]
MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
BUCKET = "visinstruct-batch"
ROLE = "arn:aws:iam::123456789012:role/BedrockBatch"
RunCli = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """One moto server (S3) for the module; `aws` empties it before each test."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


class Aws:
    """The fakes of one test: the batch control plane, the on-demand runtime, the env vars."""

    def __init__(self, plane: BatchControlPlane, runtime: BedrockServer, env: dict[str, str]):
        self.plane = plane
        self.runtime = runtime
        self.env = env


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """An empty moto S3 with the bucket, the control plane and an on-demand Bedrock runtime."""
    runtime = BedrockServer(Script(Reply(text=reply_to_request))).start()
    aws_env(monkeypatch, bedrock_url=runtime.url)
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"),
                           timeout=10).close()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_url)
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    plane = BatchControlPlane(moto_url).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK", plane.url)
    env = {**aws_env_vars(bedrock_url=runtime.url), "AWS_ENDPOINT_URL_S3": moto_url,
           "AWS_ENDPOINT_URL_BEDROCK": plane.url}
    try:
        yield Aws(plane, runtime, env)
    finally:
        plane.stop()
        runtime.stop()


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


@pytest.mark.parametrize("out_of_order", [False, True])
def test_a_batch_run_exports_the_same_pairs_as_the_same_run_online(
        aws: Aws, run_cli: RunCli, tmp_path: Path, out_of_order: bool) -> None:
    aws.plane.out_of_order = out_of_order
    aws.plane.polls_to_finish = 3
    online = write_config(tmp_path, "online", backend="bedrock")
    code, _, err = run_cli("run", "--headless", "--config", online)
    assert code == 0, err
    calls_online = aws.runtime.script.count()
    batch = write_config(tmp_path, "batch", extra="min_records = 5\n")
    code, _, err = run_cli("run", "--headless", "--config", batch)
    assert code == 0, err
    assert aws.runtime.script.count() == calls_online  # nothing went on demand
    pairs = exported(run_cli, db_of(batch), tmp_path / "batch.json")
    assert pairs and pairs == exported(run_cli, db_of(online), tmp_path / "online.json")
    report = status(run_cli, db_of(batch))
    jobs = report["batch_jobs"]
    assert [(j["stage"], j["model"], j["records"], j["status"]) for j in jobs] == [
        ("generate", "claude", 12, "Completed"), ("judge", "claude", 12, "Completed")]
    assert all(j["arn"].startswith("arn:aws:bedrock:us-east-1:") for j in jobs)
    # Every record is a finished call in the ledger, priced at the batch prices.
    tokens = rows(db_of(batch), "SELECT SUM(tokens_in), SUM(tokens_out), COUNT(*) FROM llm_calls "
                               "WHERE status = 'ok' AND endpoint LIKE 'batch:%'")[0]
    assert tokens[2] == 24
    assert report["cost_usd"] == pytest.approx((tokens[0] * 0.125 + tokens[1] * 0.625) / 1e6,
                                               abs=1e-6)
    assert "ETA" in err or "batch" in err


def first_image_id() -> int:
    return min(image["id"] for image in json.loads(sample.captions_path().read_text())["images"])


def test_records_with_errors_go_into_the_next_job_until_attempts_run_out(
        aws: Aws, run_cli: RunCli, tmp_path: Path) -> None:
    seen: dict[str, int] = {}
    hopeless = f"generate|{first_image_id()}|conversation|"

    def flaky(record_id: str) -> dict[str, Any] | None:
        # Detail records fail their first try; one conversation record fails every time.
        seen[record_id] = seen.get(record_id, 0) + 1
        if record_id.startswith("generate|") and "|detail|" in record_id and seen[record_id] == 1:
            return {"errorCode": 500, "errorMessage": "model timed out"}
        if record_id.startswith(hopeless):
            return {"errorCode": 400, "errorMessage": "bad request: prompt too long"}
        return None

    aws.plane.record_error = flaky
    config = write_config(tmp_path, extra="min_records = 1\n")
    code, _, err = run_cli("run", "--headless", "--config", config)
    assert code == 1, err  # one unit failed after its two attempts
    db = db_of(config)
    errors = rows(db, "SELECT key, error, attempt FROM llm_calls WHERE status = 'error'")
    detail = [e for e in errors if "|detail|" in e[0]]
    assert len(detail) == 4 and all("model timed out" in e[1] for e in detail)
    failed_for_good = [e for e in errors if e[0].startswith(hopeless)]
    assert [e[2] for e in failed_for_good] == [1, 2]
    assert all("prompt too long" in e[1] for e in failed_for_good)
    jobs = status(run_cli, db)["batch_jobs"]
    # 12 records, then the 4 detail records and the hopeless one again; then no third try.
    assert [j["records"] for j in jobs if j["stage"] == "generate"] == [12, 5]
    assert rows(db, "SELECT COUNT(*) FROM generations")[0][0] == 11
    assert [j["error_records"] for j in jobs if j["stage"] == "generate"] == [5, 1]


def test_a_failed_job_is_reported_and_its_records_are_sent_again(
        aws: Aws, run_cli: RunCli, tmp_path: Path) -> None:
    aws.plane.fail_jobs = {1}
    aws.plane.fail_message = "Amazon Bedrock could not read s3://x: AccessDenied"
    config = write_config(tmp_path, extra="min_records = 5\n")
    code, out, err = run_cli("run", "--headless", "--json", "--config", config)
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    failed = [e for e in events if e["event"] == "BatchJobUpdated" and e["status"] == "Failed"]
    assert failed and "AccessDenied" in failed[0]["message"]
    jobs = status(run_cli, db_of(config))["batch_jobs"]
    assert [(j["stage"], j["records"], j["status"]) for j in jobs] == [
        ("generate", 12, "Failed"), ("generate", 12, "Completed"), ("judge", 12, "Completed")]
    assert "AccessDenied" in jobs[0]["message"]
    assert rows(db_of(config), "SELECT COUNT(*) FROM llm_calls WHERE status = 'error'")[0][0] == 0


def test_a_remainder_below_min_records_goes_on_demand_or_waits(
        aws: Aws, run_cli: RunCli, tmp_path: Path) -> None:
    config = write_config(tmp_path, "demand", limit=2, extra="min_records = 100\n")
    code, _, err = run_cli("run", "--headless", "--config", config)
    assert code == 0, err
    assert aws.plane.creates == 0
    assert aws.runtime.script.count() == 12  # 6 generations and 6 judgements on demand
    assert status(run_cli, db_of(config))["kept_pairs"] > 0
    waiting = write_config(tmp_path, "wait", limit=2,
                           extra="min_records = 100\non_demand_remainder = false\n")
    code, out, err = run_cli("run", "--headless", "--json", "--config", waiting)
    assert aws.plane.creates == 0 and aws.runtime.script.count() == 12
    events = [json.loads(line) for line in out.splitlines()]
    assert any(e["event"] == "BatchRecordsWaiting" and e["records"] == 6 for e in events)


def start_run(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "visinstruct.core.cli", "run", "--headless", "--json",
         "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=REPO, env={**os.environ, **env, "NO_COLOR": "1"})


def wait_for_job(process: subprocess.Popen[str]) -> dict[str, Any]:
    """Read the run's JSON events until its first job is submitted."""
    assert process.stdout is not None
    for line in process.stdout:
        event = json.loads(line)
        if event["event"] == "BatchJobUpdated":
            return event
    raise AssertionError(f"the run ended without a job: {process.stderr.read() if process.stderr else ''}")


@pytest.mark.timeout(240)
def test_sigkill_during_the_first_job_then_rerun_polls_it_and_finishes(
        aws: Aws, run_cli: RunCli, tmp_path: Path) -> None:
    aws.plane.hold.set()
    config = write_config(tmp_path, extra="min_records = 5\n")
    process = start_run(config, aws.env)
    job = wait_for_job(process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert aws.plane.creates == 1 and job["stage"] == "generate"
    aws.plane.hold.clear()
    code, _, err = run_cli("run", "--headless", "--config", config)
    assert code == 0, err
    db = db_of(config)
    assert rows(db, "SELECT COUNT(*) FROM batch_jobs WHERE stage = 'generate'")[0][0] == 1
    assert len([j for j in aws.plane.jobs.values() if j.name.startswith("visinstruct-generate")]) == 1
    assert aws.runtime.script.count() == 0  # nothing on demand
    assert rows(db, "SELECT COUNT(*) FROM llm_calls WHERE endpoint NOT LIKE 'batch:%'")[0][0] == 0
    assert status(run_cli, db)["kept_pairs"] > 0


@pytest.mark.timeout(240)
def test_ctrl_c_leaves_the_job_running_and_batch_stop_stops_it(
        aws: Aws, run_cli: RunCli, tmp_path: Path) -> None:
    aws.plane.hold.set()
    config = write_config(tmp_path, extra="min_records = 5\n")
    process = start_run(config, aws.env)
    wait_for_job(process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 3
    assert "still running" in err and "visinstruct batch stop" in err
    assert aws.plane.stops == 0
    db = db_of(config)
    code, out, err = run_cli("batch", "stop", "--db", db)
    assert code == 0, err
    assert aws.plane.stops == 1 and out.strip() == next(iter(aws.plane.jobs.values())).arn
    assert [j["status"] for j in status(run_cli, db)["batch_jobs"]] == ["Stopping"]
    aws.plane.hold.clear()
    code, _, err = run_cli("run", "--headless", "--config", config)
    assert code == 0, err
    statuses = [(j["stage"], j["status"]) for j in status(run_cli, db)["batch_jobs"]]
    assert statuses[0] == ("generate", "Stopped") and statuses[-1] == ("judge", "Completed")


def test_mixed_stages_batch_judging_after_online_generation_and_the_reverse(
        aws: Aws, run_cli: RunCli, tmp_path: Path) -> None:
    online = write_config(tmp_path, "online", backend="bedrock")
    assert run_cli("run", "--headless", "--config", online)[0] == 0
    expected = exported(run_cli, db_of(online), tmp_path / "online.json")
    on_demand = f"""[models.live]
backend = "bedrock"
model_id = "{MODEL_ID}"
"""
    for name, stage in (("judge_batch", "generation"), ("generate_batch", "judge")):
        config = write_config(tmp_path, name, extra="min_records = 5\n")
        config.write_text(config.read_text().replace(f'[{stage}]\nmodel = "claude"',
                                                     f'[{stage}]\nmodel = "live"') + on_demand)
        code, _, err = run_cli("run", "--headless", "--config", config)
        assert code == 0, err
        jobs = status(run_cli, db_of(config))["batch_jobs"]
        assert [j["stage"] for j in jobs] == ["judge" if stage == "generation" else "generate"]
        pairs = exported(run_cli, db_of(config), tmp_path / f"{name}.json")
        # Same replies, same pairs; only the model recorded for one stage differs.
        assert [p["conversations"] for p in pairs] == [p["conversations"] for p in expected]


def test_a_mistral_batch_takes_its_token_counts_from_the_manifest(
        aws: Aws, run_cli: RunCli, tmp_path: Path) -> None:
    config = write_config(tmp_path, extra="min_records = 5\n")
    config.write_text(config.read_text().replace(MODEL_ID, "mistral.mixtral-8x7b-instruct-v0:1"))
    code, _, err = run_cli("run", "--headless", "--config", config)
    assert code == 0, err
    db = db_of(config)
    prompts = [json.loads(line)["modelInput"]["prompt"] for line in boto3.client(
        "s3", region_name="us-east-1").get_object(
            Bucket=BUCKET, Key=next(iter(aws.plane.jobs.values())).input_uri.split(
                f"s3://{BUCKET}/", 1)[1])["Body"].read().decode().splitlines()]
    assert all(p.startswith("<s>[INST] ") and p.endswith(" [/INST]") for p in prompts)
    for job in aws.plane.jobs.values():
        stored = rows(db, "SELECT SUM(tokens_in), SUM(tokens_out) FROM llm_calls "
                          "WHERE endpoint = ?", (f"batch:{job.job_id}",))[0]
        assert stored == (job.counts["inputTokenCount"], job.counts["outputTokenCount"])
        assert stored[0] > 0
    assert status(run_cli, db)["kept_pairs"] > 0


def test_a_job_that_cannot_be_submitted_is_reported_and_nothing_runs_on_demand(
        aws: Aws, run_cli: RunCli, tmp_path: Path) -> None:
    aws.plane.create_error = (403, "AccessDeniedException",
                              "not authorized to perform iam:PassRole on BedrockBatch")
    config = write_config(tmp_path, extra="min_records = 5\n")
    code, out, err = run_cli("run", "--headless", "--json", "--config", config)
    assert code == 1, err  # every unit failed to go out; run again once the role is fixed
    notices = [json.loads(line) for line in out.splitlines()
               if json.loads(line)["event"] == "BatchNotice"]
    assert len(notices) == 1 and "iam:PassRole" in notices[0]["message"]
    assert aws.runtime.script.count() == 0
    assert status(run_cli, db_of(config))["batch_jobs"] == []


def test_a_partially_completed_job_keeps_what_it_returned_and_resends_the_rest(
        aws: Aws, run_cli: RunCli, tmp_path: Path) -> None:
    dropped = {f"generate|{first_image_id()}|detail|", f"generate|{first_image_id()}|conversation|"}
    lost_once: set[str] = set()

    def drop(record_id: str) -> bool:
        # The first job never gets to two records (as when the job's time runs out).
        if any(record_id.startswith(d) for d in dropped) and record_id not in lost_once:
            lost_once.add(record_id)
            return True
        return False

    aws.plane.drop_record = drop
    config = write_config(tmp_path, extra="min_records = 1\n")
    code, out, err = run_cli("run", "--headless", "--json", "--config", config)
    assert code == 0, err
    db = db_of(config)
    report = status(run_cli, db)
    assert [(j["stage"], j["records"], j["status"], j["ok_records"])
            for j in report["batch_jobs"]][:2] == [("generate", 12, "PartiallyCompleted", 10),
                                                 ("generate", 2, "Completed", 2)]
    notices = [json.loads(line)["message"] for line in out.splitlines()
               if json.loads(line)["event"] == "BatchNotice"]
    assert any("PartiallyCompleted" in n for n in notices)
    assert rows(db, "SELECT COUNT(*) FROM generations")[0][0] == 12
    tokens_in, tokens_out = rows(db, "SELECT SUM(tokens_in), SUM(tokens_out) FROM llm_calls "
                                     "WHERE status = 'ok'")[0]
    assert report["cost_usd"] == pytest.approx((tokens_in * 0.125 + tokens_out * 0.625) / 1e6,
                                               abs=1e-6)


def test_a_crash_between_creating_a_job_and_storing_it_still_makes_one_job(
        aws: Aws, run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from visinstruct.core import pipeline
    from visinstruct.core.config import load_config
    from visinstruct.core.events import ignore
    from visinstruct.core.pipeline import batch
    from visinstruct.core.store.database import Store

    def crash(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("the process died here")

    path = write_config(tmp_path, extra="min_records = 5\n")
    config = load_config(path)
    with monkeypatch.context() as patched, Store(config.db) as store:
        patched.setattr(batch, "save_job", crash)
        summary = pipeline.run(config, store, ignore)  # a crash is the run's failure, recorded
    assert summary.status == "failed" and "the process died here" in summary.error
    assert aws.plane.creates == 1 and len(aws.plane.jobs) == 1
    code, _, err = run_cli("run", "--headless", "--config", path)
    assert code == 0, err
    # The same records made the same token: Bedrock answered with the first job.
    assert len([j for j in aws.plane.jobs.values() if "generate" in j.name]) == 1
    assert aws.plane.creates == 3  # generation twice (one job), judging once
    assert [j["stage"] for j in status(run_cli, db_of(path))["batch_jobs"]] == [
        "generate", "judge"]


def test_evaluation_by_batch_stores_a_verdict_per_comparison(
        aws: Aws, run_cli: RunCli, tmp_path: Path) -> None:
    config = write_config(tmp_path, extra="min_records = 5\n")
    config.write_text(config.read_text().replace(
        "limit = 4\n", f'limit = 4\nbaseline = "{sample.baseline_path()}"\n')
        + '[evaluation]\nmodel = "claude"\nsample = 0\n')
    assert run_cli("run", "--headless", "--config", config)[0] == 0

    def verdict(model_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"content": [{"type": "text", "text": "8 6\nThe first answer is fuller."}],
                "stop_reason": "end_turn", "usage": {"input_tokens": 50, "output_tokens": 9}}

    aws.plane.respond = verdict
    code, out, err = run_cli("evaluate", "--config", config, "--json")
    assert code == 0, err
    report = json.loads(out)
    jobs = [j for j in status(run_cli, db_of(config))["batch_jobs"] if j["stage"] == "evaluate"]
    assert len(jobs) == 1 and jobs[0]["status"] == "Completed"
    units = report["sample"]["units"]
    assert units > 0 and report["new_calls"] == 2 * units  # both orders of every comparison
    assert jobs[0]["records"] == 2 * units and report["verdicts"] == 2 * units
    assert report["overall"]["unparsed"] == 0
    assert aws.runtime.script.count() == 0
    # Run again: everything is stored, nothing is sent.
    code, out, err = run_cli("evaluate", "--config", config, "--json")
    assert code == 0, err
    assert aws.plane.creates == 3 and json.loads(out)["new_calls"] == 0


def test_short_answers_in_a_batch_run_make_no_job_and_no_call(
        aws: Aws, run_cli: RunCli, tmp_path: Path) -> None:
    config = write_config(tmp_path, limit=0)
    config.write_text(config.read_text().replace("limit = 0\n", (
        f'limit = 0\nvqa_questions = "{sample.vqa_questions_path()}"\n'
        f'vqa_annotations = "{sample.vqa_annotations_path()}"\n')).replace(
        '[generation]\nmodel = "claude"\n', '[generation]\nmodel = "claude"\n'
                                            'tasks = ["short_answer"]\n'))
    code, _, err = run_cli("run", "--headless", "--config", config)
    assert code == 0, err
    assert aws.runtime.script.count() == 0
    assert status(run_cli, db_of(config))["batch_jobs"] == []
    records = exported(run_cli, db_of(config), tmp_path / "short.json")
    assert len(records) == 5  # the sample images with VQAv2 facts


def test_batch_generations_are_gated_and_gated_pairs_never_reach_the_batch_judge(
        aws: Aws, run_cli: RunCli, tmp_path: Path) -> None:
    """Garbage in a batch reply is stopped by the gates even when the judge would score it 9."""
    from tests.fakes.bedrock_batch_server import model_reply
    from tests.fakes.model_replies import prompt_text as body_text

    judge_prompts: list[str] = []

    def respond(model_id: str, body: dict[str, Any]) -> dict[str, Any]:
        text = body_text(body)
        reply = model_reply(model_id, body)
        if "score" in text.lower() and "rate" in text.lower():
            judge_prompts.append(text)
            count = text.count("Q:") or text.count("Question") or 1
            reply["content"][0]["text"] = json.dumps(
                {"scores": [{"score": 9, "reason": "fine"} for _ in range(max(count, 3))]})
            return reply
        pairs = [{"question": "What is the man holding in his hand?",
                  "answer": "He is holding a red umbrella over his head."},
                 {"question": "...", "answer": "..."},
                 {"question": "Is there a refusal here?",
                  "answer": "As an AI language model, I cannot see images."}]
        reply["content"][0]["text"] = json.dumps({"pairs": pairs})
        return reply

    aws.plane.respond = respond
    config = write_config(tmp_path, "gated", limit=1, extra="min_records = 1\n")
    config.write_text(config.read_text().replace(
        '[generation]\nmodel = "claude"', '[generation]\nmodel = "claude"\ntasks = ["conversation"]'))
    code, _, err = run_cli("run", "--headless", "--config", config)
    assert code == 0, err
    report = status(run_cli, db_of(config))
    assert report["dropped_by_rule"] == {"placeholder": 1, "refusal": 1}
    assert judge_prompts  # the judge was asked, by batch, about the pairs that passed
    for prompt in judge_prompts:
        assert "As an AI language model" not in prompt
    records = exported(run_cli, db_of(config), tmp_path / "gated.json")
    answers = [turn["value"] for record in records for turn in record["conversations"]
               if turn["from"] == "gpt"]
    assert answers == ["He is holding a red umbrella over his head."]
