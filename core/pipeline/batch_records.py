"""A batch stage's pending records: the units still needing the stage's call, as JSONL records."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from visinstruct.core.config import ModelConfig
from visinstruct.core.models.backends.bedrock_bodies import request_body
from visinstruct.core.pipeline.generate import generation_request
from visinstruct.core.pipeline.judge import judge_request
from visinstruct.core.pipeline.panel import unjudged_pairs
from visinstruct.core.records import FACT_TASKS, Image
from visinstruct.core.store.batch_jobs import BatchRecord, keys_in_unread_jobs, tries_this_run
from visinstruct.core.models.ledger import call_key, request_hash
from visinstruct.core.store.queries import load_images

if TYPE_CHECKING:
    from visinstruct.core.pipeline.runner import _Runner

NEEDS = {"generate": "generate", "judge": "judge"}


@dataclass(frozen=True)
class PendingRecord:
    """One record to send: its stored description, the InvokeModel body and its image.

    `no_call` marks an image with nothing to describe, which is written without any call.
    """

    record: BatchRecord
    body: dict[str, Any]
    image: Image
    no_call: bool = False


def pending_records(runner: _Runner, run_id: int, stage: str, model: ModelConfig, *,
                    bodies: bool = True) -> Iterator[PendingRecord]:
    """Every unit that still needs `stage` and is in no unread job, in image order.

    Records that came back failed (or not at all) `model.attempts` times in this run are left
    out: they are failed units until the next run.
    With `bodies` False the bodies are left empty (for counting).
    """
    in_jobs = keys_in_unread_jobs(runner.store, stage)
    failed = tries_this_run(runner.store, stage, run_id)
    judge_template = runner.judge_template
    for ids in runner.image_pages():
        pending = [p for p in runner._pending(ids) if p[2] == NEEDS[stage]]
        if not pending:
            continue
        images = load_images(runner.store, sorted({p[0] for p in pending}))
        for image_id, task, _need, generation_id in pending:
            image = images[image_id]
            template = runner.templates[task] if stage == "generate" else judge_template
            assert template is not None
            item = "" if stage == "generate" else str(generation_id)
            key = call_key(stage, image_id, task, template.version, model.name, item)
            if key in in_jobs or failed.get(key, 0) >= model.attempts:
                continue
            record = BatchRecord(key, key, image_id, task, template.version, generation_id)
            # Nothing to describe, or short answers (made from the facts): no model call.
            if stage == "generate" and (task in FACT_TASKS or not image.has_context):
                yield PendingRecord(record, {}, image, no_call=True)
                continue
            if not bodies:
                yield PendingRecord(record, {}, image)
                continue
            if stage == "generate":
                request = generation_request(template, image, runner.config.generation, task)
            else:
                pairs = tuple(p for _, p in unjudged_pairs(runner.store, generation_id,
                                                           runner.config.judge, template.version))
                request = judge_request(template, image, pairs, runner.config.judge)
            yield PendingRecord(replace(record, request_hash=request_hash(request)),
                                request_body(model.model_id, request), image)
