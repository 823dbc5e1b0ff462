"""Bedrock batch runs that go through: the same pairs as online, mixed stages, Mistral token counts,
evaluation, short answers and gates, against moto's S3 and the loopback control plane."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.integration.support_batch import (
    BUCKET,
    MODEL_ID,
    Aws,
    RunCli,
    db_of,
    exported,
    rows,
    status,
    write_config,
)
from visinstruct.dataset import sample


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
        '[generation]\nmodel = "claude"',
        '[generation]\nmodel = "claude"\ntasks = ["conversation"]'))
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


def test_a_batch_generation_whose_every_pair_is_gated_is_a_done_unit(
        aws: Aws, run_cli: RunCli, tmp_path: Path) -> None:
    """No judge record is made for it, and the run counts it done (it said 0/2 units)."""
    from tests.fakes.bedrock_batch_server import model_reply

    def respond(model_id: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = model_reply(model_id, body)
        reply["content"][0]["text"] = json.dumps({"pairs": [{"question": "...",
                                                             "answer": "..."}]})
        return reply

    aws.plane.respond = respond
    config = write_config(tmp_path, "all_gated", limit=2, extra="min_records = 1\n")
    config.write_text(config.read_text().replace(
        '[generation]\nmodel = "claude"',
        '[generation]\nmodel = "claude"\ntasks = ["conversation"]'))
    code, _, err = run_cli("run", "--headless", "--config", config)
    assert code == 0, err
    assert "finished: 2/2 units" in err, err
    assert status(run_cli, db_of(config))["dropped_by_rule"] == {"placeholder": 2}


def _run_then_evaluate_by_batch(aws: Aws, run_cli: RunCli, tmp_path: Path, *,
                                min_records: int) -> Path:
    """A store made by a batch run, its config set to evaluate by batch with Claude, whose
    batch replies then say both sides are fine."""
    config = write_config(tmp_path, extra=f"min_records = {min_records}\n")
    config.write_text(config.read_text().replace(
        "limit = 4\n", f'limit = 4\nbaseline = "{sample.baseline_path()}"\n')
        + '[evaluation]\nmodel = "claude"\nsample = 0\n')
    assert run_cli("run", "--headless", "--config", config)[0] == 0
    aws.plane.respond = lambda model_id, body: {
        "content": [{"type": "text", "text": "7 7\nBoth are fine."}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 40, "output_tokens": 6}}
    return config


def test_evaluation_by_batch_waits_out_back_pressure_and_times_records_by_their_job(
        aws: Aws, run_cli: RunCli, tmp_path: Path) -> None:
    """The same lifecycle as the run's: too many jobs at once is retried, not given up."""
    import threading

    config = _run_then_evaluate_by_batch(aws, run_cli, tmp_path, min_records=5)
    before = aws.plane.creates
    aws.plane.create_error = (400, "ServiceQuotaExceededException", "too many batch jobs")
    done = threading.Event()

    def lift() -> None:
        # The quota frees up after two refusals.
        while not done.wait(0.01):
            if aws.plane.creates >= before + 2:
                aws.plane.create_error = None
                return

    lifter = threading.Thread(target=lift, daemon=True)
    lifter.start()
    try:
        code, out, err = run_cli("evaluate", "--config", config, "--json")
    finally:
        done.set()
        lifter.join(5)
    assert code == 0, err
    assert "trying again" in err
    report = json.loads(out)
    assert report["verdicts"] == 2 * report["sample"]["units"] > 0
    assert aws.runtime.script.count() == 0  # nothing went on demand
    db = db_of(config)
    (submitted, ended), = rows(db, "SELECT submitted_at, ended_at FROM batch_jobs "
                                   "WHERE stage = 'evaluate' AND status = 'Completed'")
    latencies = [r[0] for r in rows(db, "SELECT latency_ms FROM llm_calls "
                                        "WHERE stage = 'evaluate'")]
    # A record's latency is its job's, as in a run (the fake gives no end time: zero).
    assert latencies and latencies == pytest.approx(
        [((ended or submitted) - submitted) * 1000] * len(latencies))


def test_evaluation_records_with_errors_go_into_the_next_job_until_attempts_run_out(
        aws: Aws, run_cli: RunCli, tmp_path: Path) -> None:
    config = _run_then_evaluate_by_batch(aws, run_cli, tmp_path, min_records=1)
    seen: dict[str, int] = {}
    hopeless: list[str] = []

    def flaky(record_id: str) -> dict[str, Any] | None:
        # Every comparison fails its first try; the first one fails every time.
        if not record_id.startswith("evaluate|"):
            return None
        seen[record_id] = seen.get(record_id, 0) + 1
        hopeless[:] = hopeless or [record_id]
        if seen[record_id] == 1 or record_id == hopeless[0]:
            return {"errorCode": 500, "errorMessage": "model timed out"}
        return None

    aws.plane.record_error = flaky
    code, out, err = run_cli("evaluate", "--config", config, "--json")
    assert code == 1, err  # one comparison failed both of its attempts
    report = json.loads(out)
    comparisons = 2 * report["sample"]["units"]
    assert report["verdicts"] == comparisons - 1 and report["failed_calls"] == 1
    jobs = [j for j in status(run_cli, db_of(config))["batch_jobs"] if j["stage"] == "evaluate"]
    assert [j["records"] for j in jobs] == [comparisons, comparisons]  # and no third round
    assert set(seen.values()) == {2}
    attempts = rows(db_of(config), "SELECT attempt, COUNT(*) FROM llm_calls WHERE key = ? "
                                   "GROUP BY attempt", (hopeless[0],))
    assert attempts == [(1, 1), (2, 1)]
