"""Bedrock batch inference: JSONL records in S3, CreateModelInvocationJob, polling, outputs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.config import Config

from visinstruct.core.errors import BackendError
from visinstruct.core.models.backends.aws_client import (
    client_config,
    make_client,
    translated_errors,
)
from visinstruct.core.models.backends.base import CompletionResponse
from visinstruct.core.models.backends.bedrock_bodies import body_pictures, read_reply
from visinstruct.core.models.backends.replies import loads_reply
from visinstruct.core.store.batch_jobs import BatchRecord


@dataclass(frozen=True)
class JobState:
    """What GetModelInvocationJob says about a job."""

    arn: str
    status: str
    message: str
    ended_at: float | None
    output_uri: str = ""


@dataclass(frozen=True)
class JobOutput:
    """A job's output lines (each a dict with recordId and modelOutput or error) and manifest."""

    lines: tuple[dict[str, Any], ...]
    manifest: dict[str, Any]
    files: int


def split_s3_uri(uri: str) -> tuple[str, str]:
    """("bucket", "prefix/") of an s3:// URI; the prefix is empty or ends with '/'."""
    if not uri.startswith("s3://") or len(uri) <= 5:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def _stamp(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    return None


class BatchClient:
    """The two AWS clients a batch run needs: `s3` for records and outputs, `bedrock` for jobs.

    botocore retries are left at their standard few: the control plane calls are rare and a
    resent CreateModelInvocationJob is harmless (its token makes it the same job).
    """

    def __init__(self, region: str, *, s3_endpoint: str | None = None,
                 bedrock_endpoint: str | None = None) -> None:
        config = client_config(max_in_flight=4, read_timeout=60.0, connect_timeout=5.0)
        config = config.merge(Config(retries={"total_max_attempts": 4, "mode": "standard"}))
        self.region = region
        self._s3: Any = make_client("s3", region=region, config=config, endpoint_url=s3_endpoint)
        self._bedrock: Any = make_client("bedrock", region=region, config=config,
                                         endpoint_url=bedrock_endpoint)

    def _call(self, label: str, fn: Any, **kwargs: Any) -> Any:
        with translated_errors(label):
            return fn(**kwargs)

    def put_records(self, uri: str, lines: list[str]) -> None:
        """Write one JSONL object at `uri` (s3://bucket/key.jsonl)."""
        bucket, key = split_s3_uri(uri)
        body = ("\n".join(lines) + "\n").encode("utf-8")
        self._call(f"S3 {uri}", self._s3.put_object, Bucket=bucket, Key=key.rstrip("/"),
                   Body=body, ContentType="application/jsonl")

    def create_job(self, *, name: str, token: str, model_id: str, role_arn: str,
                   input_uri: str, output_uri: str, timeout_hours: int) -> str:
        """CreateModelInvocationJob; returns the job ARN (the same ARN for a repeated token)."""
        reply = self._call(
            f"Bedrock CreateModelInvocationJob {name}", self._bedrock.create_model_invocation_job,
            jobName=name, clientRequestToken=token, modelId=model_id, roleArn=role_arn,
            inputDataConfig={"s3InputDataConfig": {"s3Uri": input_uri, "s3InputFormat": "JSONL"}},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": output_uri}},
            timeoutDurationInHours=timeout_hours)
        return str(reply["jobArn"])

    def job_state(self, arn: str) -> JobState:
        """GetModelInvocationJob."""
        reply = self._call(f"Bedrock job {arn}", self._bedrock.get_model_invocation_job,
                           jobIdentifier=arn)
        output = (reply.get("outputDataConfig") or {}).get("s3OutputDataConfig") or {}
        return JobState(arn, str(reply.get("status") or ""), str(reply.get("message") or ""),
                        _stamp(reply.get("endTime")), str(output.get("s3Uri") or ""))

    def stop_job(self, arn: str) -> None:
        """StopModelInvocationJob."""
        self._call(f"Bedrock job {arn}", self._bedrock.stop_model_invocation_job,
                   jobIdentifier=arn)

    def read_output(self, output_uri: str, job_id: str) -> JobOutput:
        """Every `<output>/<job id>/*.jsonl.out` line and the job's manifest.json.out."""
        bucket, prefix = split_s3_uri(output_uri)
        prefix = f"{prefix}{job_id}/"
        keys: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call(f"S3 s3://{bucket}/{prefix}", self._s3.list_objects_v2, **kwargs)
            keys += [item["Key"] for item in page.get("Contents", [])]
            token = page.get("NextContinuationToken")
            if not token:
                break
        lines: list[dict[str, Any]] = []
        manifest: dict[str, Any] = {}
        files = 0
        for key in keys:
            if not key.endswith((".jsonl.out", "manifest.json.out")):
                continue
            body = self._call(f"S3 s3://{bucket}/{key}", self._s3.get_object, Bucket=bucket,
                              Key=key)["Body"].read().decode("utf-8", errors="replace")
            if key.endswith("manifest.json.out"):
                try:
                    manifest = json.loads(body)
                except json.JSONDecodeError:
                    manifest = {}
                continue
            files += 1
            for text in body.splitlines():
                if not text.strip():
                    continue
                try:
                    line = loads_reply(text)
                except json.JSONDecodeError:
                    continue  # a torn line: its record returns to pending
                if isinstance(line, dict) and isinstance(line.get("recordId"), str):
                    lines.append(line)
        return JobOutput(tuple(lines), manifest if isinstance(manifest, dict) else {}, files)

    def close(self) -> None:
        """Close both clients' connection pools."""
        self._s3.close()
        self._bedrock.close()


def record_error(error: Any) -> BackendError:
    """A record's `error` object as the BackendError an online call would have raised."""
    code = error.get("errorCode") if isinstance(error, dict) else None
    message = error.get("errorMessage") if isinstance(error, dict) else None
    status = code if isinstance(code, int) else None
    if status == 429 or (status is not None and status >= 500):
        kind = BackendError.TRANSIENT
    else:
        kind = BackendError.PERMANENT if status else BackendError.TRANSIENT
    return BackendError(f"batch record error {code}: {message or 'no message'}", kind=kind,
                        error_class=f"BatchRecord{code}" if code is not None else "BatchRecord",
                        status=status)


def job_token(stage: str, model_name: str, model_id: str, records: Sequence[tuple[str, str]],
              tries: dict[str, int]) -> str:
    """The clientRequestToken of (ledger key, request hash) records: the same records in the
    same round (`tries` per key) always make the same token, so a resubmission is the same job."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{stage}\x00{model_name}\x00{model_id}\x00".encode())
    for key, hashed in sorted(records):
        digest.update(f"{key}\x00{hashed}\x00{tries.get(key, 0)}\x01".encode())
    return digest.hexdigest()


class Backoff:
    """Poll intervals: `base` after news, growing by half per quiet poll up to 5x base."""

    def __init__(self, base: float) -> None:
        self.base = base
        self.current = base

    def reset(self) -> None:
        self.current = self.base

    def next(self) -> float:
        value = self.current
        self.current = min(self.base * 5, self.current * 1.5)
        return value


Reply = tuple[BatchRecord, CompletionResponse | None, BackendError | None]


def join_replies(output: JobOutput, records: dict[str, BatchRecord], done: set[str],
                 model_id: str, endpoint: str) -> list[Reply]:
    """Each returned record once, by recordId (Bedrock does not keep the input order).

    Records already in the ledger (`done`, from an earlier read) and lines naming no record of
    the job are skipped; replies without token counts get their share of the manifest's.
    """
    replies: list[Reply] = []
    seen: set[str] = set()
    for line in output.lines:
        record = records.get(line["recordId"])
        if record is None or record.key in done or record.key in seen:
            continue
        seen.add(record.key)
        if "modelOutput" not in line:
            replies.append((record, None, record_error(line.get("error"))))
            continue
        try:
            reply = read_reply(model_id, line["modelOutput"])
        except BackendError as error:
            replies.append((record, None, error))
            continue
        raw = json.dumps(line["modelOutput"], ensure_ascii=False)
        # Bedrock returns each record's input beside its output: the pictures it carried.
        pictures = body_pictures(line.get("modelInput"))
        replies.append((record, reply.response(endpoint, raw, {"pictures": pictures}), None))
    return spread_manifest_tokens(replies, output.manifest)


def spread_manifest_tokens(replies: list[Reply], manifest: dict[str, Any]) -> list[Reply]:
    """Give replies without token counts (Mistral's) their share of the manifest's totals."""
    bare = [i for i, (_, response, _) in enumerate(replies)
            if response is not None and not response.tokens_in and not response.tokens_out]
    if not bare:
        return replies
    counted_in = sum(r.tokens_in for _, r, _ in replies if r is not None)
    counted_out = sum(r.tokens_out for _, r, _ in replies if r is not None)
    left_in = max(0, _count(manifest.get("inputTokenCount")) - counted_in)
    left_out = max(0, _count(manifest.get("outputTokenCount")) - counted_out)
    spread = list(replies)
    for n, index in enumerate(bare):
        record, response, _ = replies[index]
        assert response is not None
        share_in = left_in // len(bare) + (1 if n < left_in % len(bare) else 0)
        share_out = left_out // len(bare) + (1 if n < left_out % len(bare) else 0)
        spread[index] = (record, CompletionResponse(
            response.text, response.finish_reason, share_in, share_out, response.endpoint,
            response.raw), None)
    return spread


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
