"""The pure parts of Bedrock batch runs: config keys, bodies per family, tokens, job tokens,
cost."""

from __future__ import annotations

from pathlib import Path

import pytest

from visinstruct.core.config import load_config
from visinstruct.core.errors import BackendError, ConfigError
from visinstruct.core.models.backends.base import CompletionRequest, CompletionResponse, Message
from visinstruct.core.models.backends.bedrock_batch import (
    record_error,
    split_s3_uri,
    spread_manifest_tokens,
)
from visinstruct.core.models.backends.bedrock_bodies import read_reply, request_body
from visinstruct.core.store.batch_jobs import BatchRecord

BATCH = """
[generation]
model = "mixtral"
[judge]
model = "mixtral"
[models.mixtral]
backend = "bedrock-batch"
model_id = "mistral.mixtral-8x7b-instruct-v0:1"
s3_uri = "s3://my-bucket/visinstruct/"
role_arn = "arn:aws:iam::123456789012:role/BedrockBatch"
"""
REQUEST = CompletionRequest(
    messages=(Message("system", "You write questions."), Message("user", "A red bus.")),
    max_tokens=300, temperature=0.7, top_p=0.9)


def config_with(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "run.toml"
    path.write_text(BATCH + extra)
    return path


def test_batch_keys_have_the_documented_defaults(tmp_path: Path) -> None:
    model = load_config(config_with(tmp_path)).model("mixtral")
    assert (model.min_records, model.max_records_per_job, model.poll_seconds,
            model.timeout_hours, model.on_demand_remainder) == (100, 50_000, 60.0, 24, True)


@pytest.mark.parametrize(("extra", "named"), [
    ('s3_uri = "my-bucket/visinstruct"\n', "s3_uri"),
    ('role_arn = "BedrockBatch"\n', "role_arn"),
    ("timeout_hours = 12\n", "timeout_hours"),
    ("min_records = 0\n", "min_records"),
    ("max_records_per_job = 50\n", "max_records_per_job"),
    ("poll_seconds = 0\n", "poll_seconds"),
    ('model_id = "cohere.command-r-v1:0"\n', "model_id"),
    ('on_demand_remainder = "yes"\n', "on_demand_remainder"),
])
def test_a_bad_batch_key_is_refused_by_name(tmp_path: Path, extra: str, named: str) -> None:
    path = tmp_path / "run.toml"
    path.write_text(BATCH.replace(f"{named} = ", "# ") + extra)
    with pytest.raises(ConfigError, match=named):
        load_config(path)


def test_mistral_body_folds_the_system_text_into_the_instruction() -> None:
    body = request_body("mistral.mixtral-8x7b-instruct-v0:1", REQUEST)
    assert body == {"prompt": "<s>[INST] You write questions.\n\nA red bus. [/INST]",
                    "max_tokens": 300, "temperature": 0.7, "top_p": 0.9}
    reply = read_reply("mistral.mixtral-8x7b-instruct-v0:1",
                       {"outputs": [{"text": " Q: what? ", "stop_reason": "length"}]})
    assert (reply.text, reply.finish_reason, reply.tokens_in) == ("Q: what?", "length", 0)


def test_anthropic_and_llama_bodies_and_replies() -> None:
    body = request_body("us.anthropic.claude-3-5-haiku-20241022-v1:0", REQUEST)
    assert body["anthropic_version"] == "bedrock-2023-05-31" and body["system"]
    reply = read_reply("anthropic.claude-3-haiku-20240307-v1:0", {
        "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 9, "output_tokens": 2}})
    assert (reply.text, reply.tokens_in, reply.tokens_out) == ("hi", 9, 2)
    llama = request_body("meta.llama3-70b-instruct-v1:0", REQUEST)
    assert llama["max_gen_len"] == 300
    assert llama["prompt"].endswith("assistant<|end_header_id|>\n\n")
    assert read_reply("meta.llama3-70b-instruct-v1:0", {
        "generation": "ok", "prompt_token_count": 5, "generation_token_count": 1,
        "stop_reason": "stop"}).tokens_in == 5


def test_an_unreadable_model_output_is_a_transient_error() -> None:
    with pytest.raises(BackendError) as raised:
        read_reply("mistral.mistral-large-2402-v1:0", {"unexpected": True})
    assert raised.value.kind == BackendError.TRANSIENT


def test_a_record_error_keeps_its_code_and_message() -> None:
    error = record_error({"errorCode": 400, "errorMessage": "bad request"})
    assert error.kind == BackendError.PERMANENT and error.status == 400
    assert "bad request" in str(error) and error.error_class == "BatchRecord400"
    assert record_error({"errorCode": 503, "errorMessage": "busy"}).kind == BackendError.TRANSIENT


def test_s3_uris_split_into_bucket_and_prefix() -> None:
    assert split_s3_uri("s3://bucket/a/b/") == ("bucket", "a/b/")
    assert split_s3_uri("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError):
        split_s3_uri("https://bucket/a")


def test_manifest_tokens_are_spread_over_replies_that_carry_none() -> None:
    record = BatchRecord("r", "k", 1, "detail", "v")
    bare = CompletionResponse("a", endpoint="batch:x")
    counted = CompletionResponse("b", tokens_in=10, tokens_out=4, endpoint="batch:x")
    replies = [(record, bare, None), (record, bare, None), (record, counted, None),
               (record, None, BackendError("e"))]
    spread = spread_manifest_tokens(replies, {"inputTokenCount": 31, "outputTokenCount": 9})
    totals = [(r.tokens_in, r.tokens_out) for _, r, _ in spread if r is not None]
    assert totals == [(11, 3), (10, 2), (10, 4)]
    assert sum(t[0] for t in totals) == 31 and sum(t[1] for t in totals) == 9


def test_the_job_token_depends_on_the_records_and_their_round_only(tmp_path: Path) -> None:
    from visinstruct.core.models.backends.bedrock_batch import job_token

    model = ("mixtral", "mistral.mixtral-8x7b-instruct-v0:1")
    records = [(f"generate|{i}|detail|v|mixtral|", f"h{i}") for i in range(3)]
    token = job_token("generate", *model, records, {})
    assert token == job_token("generate", *model, list(reversed(records)), {})
    assert token.isalnum() and len(token) <= 256  # Bedrock's idempotency-token pattern
    assert token != job_token("generate", *model, records[:2], {})
    assert token != job_token("generate", *model, records, {records[0][0]: 1})


def test_a_batch_models_on_demand_calls_cost_twice_its_batch_prices(tmp_path: Path) -> None:
    from visinstruct.core.store.cost import CostMeter, cost_report
    from visinstruct.core.store.database import Store

    config = load_config(config_with(tmp_path, "price_in_per_million = 1.0\n"
                                               "price_out_per_million = 2.0\n"))
    with Store(tmp_path / "cost.db") as store:
        store.write_sync(lambda c: c.executemany(
            "INSERT INTO llm_calls (key, stage, model, endpoint, status, tokens_in, tokens_out, "
            "started_at) VALUES ('k', 'generate', 'mixtral', ?, 'ok', ?, ?, 0)",
            [("batch:job000000001", 1_000_000, 500_000),
             ("mistral.mixtral-8x7b-instruct-v0:1", 1_000_000, 0)]))
        # batch: 1.0 + 1.0 at batch prices; on demand: 1.0 x 2
        assert cost_report(store, config).by_model["mixtral"] == pytest.approx(4.0)
        meter = CostMeter(store, config)
        meter.add_call("mixtral", 1_000_000, 0, "batch:job000000002")
        meter.add_call("mixtral", 1_000_000, 0, "mistral.mixtral-8x7b-instruct-v0:1")
        assert meter.total_usd() == pytest.approx(4.0 + 1.0 + 2.0)
