"""A finished batch job's output joined to its records: one reply or error per record."""

from __future__ import annotations

import json
from typing import Any

from visinstruct.core.errors import BackendError
from visinstruct.core.models.backends.base import CompletionResponse
from visinstruct.core.models.backends.bedrock_batch import JobOutput, record_error
from visinstruct.core.models.backends.bedrock_bodies import read_reply
from visinstruct.core.store.batch_jobs import BatchRecord

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
        replies.append((record, CompletionResponse(
            reply.text, reply.finish_reason, reply.tokens_in, reply.tokens_out, endpoint, raw),
            None))
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
