"""Evaluation through Bedrock batch jobs: every missing comparison as a record, verdicts as usual.

Only conversation mode goes by batch; answers mode needs each answer before its comparison
and stays on demand. Whatever is fewer than `min_records` goes back to the online path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from visinstruct.core.config import ModelConfig
from visinstruct.core.errors import BackendError
from visinstruct.core.evaluation.units import TASK_REQUESTS, Unit, transcript
from visinstruct.core.models.backends.bedrock_batch import (
    Backoff,
    BatchClient,
    JobOutput,
    job_token,
    join_replies,
)
from visinstruct.core.models.backends.bedrock_bodies import request_body
from visinstruct.core.models.calls import CallOutcome
from visinstruct.core.models.pool import PoolResult
from visinstruct.core.store.batch_jobs import (
    BatchJob,
    BatchRecord,
    finished_keys,
    job_records,
    keys_in_unread_jobs,
    mark_read,
    save_job,
    set_status,
    unread_jobs,
)
from visinstruct.core.models.ledger import CallInfo, call_key, request_hash

if TYPE_CHECKING:
    from visinstruct.core.evaluation.evaluate import _Evaluation, _Job

STAGE = "evaluate"


def evaluate_by_batch(state: _Evaluation, jobs: list[_Job], model: ModelConfig,
                      notice: Callable[[str], None]) -> list[_Job]:
    """Send the comparisons of `jobs` as batch jobs; returns the jobs left for on-demand calls."""
    if state.mode != "conversation":
        notice("answers mode asks each answer before comparing it: it runs on demand")
        return jobs
    client = BatchClient(model.region)
    try:
        return _Batches(state, model, client, notice).run(jobs)
    finally:
        client.close()


class _Batches:
    """Submits, polls and reads one evaluation's batch jobs (resuming those a stop left)."""

    def __init__(self, state: _Evaluation, model: ModelConfig, client: BatchClient,
                 notice: Callable[[str], None]) -> None:
        self.state = state
        self.model = model
        self.client = client
        self.notice = notice
        self.units: dict[tuple[int, str], Unit] = {}
        self.tries: dict[str, int] = {}

    def key(self, job: _Job) -> str:
        state = self.state
        return call_key(STAGE, job.unit.image.image_id, job.unit.task, state.template.version,
                        state.model, f"{state.mode}:{job.item}:{job.orders[0]}")

    def run(self, jobs: list[_Job]) -> list[_Job]:
        for job in jobs:
            self.units[(job.unit.image.image_id, job.unit.task)] = job.unit
        cancel = self.state.cancel
        backoff = Backoff(self.model.poll_seconds)
        while not cancel.is_set():
            in_jobs = keys_in_unread_jobs(self.state.store, STAGE)
            done = self._done_keys(jobs)
            pending = [j for j in jobs if self.key(j) not in in_jobs | done
                       and self.tries.get(self.key(j), 0) < self.model.attempts]
            for start in range(0, len(pending), self.model.max_records_per_job):
                chunk = pending[start:start + self.model.max_records_per_job]
                if len(chunk) >= self.model.min_records:
                    try:
                        self._submit(chunk)
                    except BackendError as error:
                        self.notice(f"cannot submit evaluation batch jobs: {error}")
                        return []
                    pending = [j for j in pending if j not in chunk]
            unread = unread_jobs(self.state.store, STAGE)
            if not unread:
                if pending and not self.model.on_demand_remainder:
                    self.notice(f"{len(pending)} comparisons wait: fewer than min_records "
                                f"({self.model.min_records}) and on_demand_remainder is false")
                    return []
                return pending
            if not self._poll(unread):
                cancel.wait(backoff.next())
            else:
                backoff.reset()
        return []

    def _done_keys(self, jobs: list[_Job]) -> set[str]:
        keys = {self.key(j) for j in jobs}
        return {r[0] for r in self.state.store.query(
            "SELECT DISTINCT key FROM llm_calls WHERE stage = ? AND status = 'ok'", (STAGE,))
            if r[0] in keys}

    def _submit(self, chunk: list[_Job]) -> None:
        state, model = self.state, self.model
        records: list[tuple[BatchRecord, dict[str, Any]]] = []
        for job in chunk:
            unit = job.unit
            request = state.comparison_request(unit, job.orders[0], TASK_REQUESTS[unit.task],
                                               transcript(unit.ours), transcript(unit.baseline))
            key = self.key(job)
            records.append((BatchRecord(key, key, unit.image.image_id, unit.task,
                                        state.template.version, unit.generation_id,
                                        request_hash(request)),
                            request_body(model.model_id, request)))
        token = job_token(STAGE, model.name, model.model_id,
                          [(r.key, r.request_hash) for r, _ in records], self.tries)
        name = f"visinstruct-{STAGE}-{token[:24]}"
        base = f"{model.s3_uri.rstrip('/')}/evaluation/{STAGE}/{name}/"
        self.client.put_records(f"{base}records.jsonl", [json.dumps(
            {"recordId": r.record_id, "modelInput": body}, ensure_ascii=False)
            for r, body in records])
        arn = self.client.create_job(name=name, token=token, model_id=model.model_id,
                                     role_arn=model.role_arn, input_uri=f"{base}records.jsonl",
                                     output_uri=f"{base}output/",
                                     timeout_hours=model.timeout_hours)
        found = self.client.job_state(arn)
        save_job(state.store, arn=arn, run_id=None, stage=STAGE, model=model.name,
                 model_id=model.model_id, region=model.region, token=token,
                 input_uri=f"{base}records.jsonl", output_uri=found.output_uri or f"{base}output/",
                 status=found.status or "Submitted", message=found.message,
                 records=[r for r, _ in records])
        self.notice(f"submitted evaluation batch job {arn} with {len(records)} comparisons")

    def _poll(self, jobs: list[BatchJob]) -> bool:
        changed = False
        for job in jobs:
            if not job.ended:
                try:
                    found = self.client.job_state(job.arn)
                except BackendError:
                    continue
                if found.status != job.status:
                    set_status(self.state.store, job, found.status, found.message,
                               found.ended_at)
                    changed = True
                if found.status not in ("Completed", "PartiallyCompleted", "Failed", "Stopped",
                                        "Expired"):
                    continue
                if found.status != "Completed":
                    self.notice(f"evaluation batch job {job.job_id} ended {found.status}: "
                                f"{found.message or 'no message'}")
            self._read(job)
            changed = True
        return changed

    def _read(self, job: BatchJob) -> None:
        state = self.state
        records = job_records(state.store, job)
        try:
            output = self.client.read_output(job.output_uri, job.job_id)
        except BackendError:
            output = JobOutput((), {}, 0)
        endpoint = f"batch:{job.job_id}"
        done = finished_keys(state.store, endpoint, (r.key for r in records.values()))
        ok = errors = tokens_in = tokens_out = 0
        for record, response, error in join_replies(output, records, done,
                                                    self.model.model_id, endpoint):
            unit = self.units.get((record.image_id, record.task))
            _mode, item, order = record.key.rsplit("|", 1)[1].split(":")
            attempt = self.tries.get(record.key, 0) + 1
            info = CallInfo(STAGE, record.image_id, record.task, state.model,
                            record.prompt_version, record.key, record.request_hash)
            listener = state.ctx.ledger.listener(info)
            ref = listener.started(endpoint, attempt)
            if response is None or unit is None:
                errors += 1
                listener.failed(ref, error or BackendError("no unit for the record"), 0.0,
                                attempt < self.model.attempts)
                continue
            ok += 1
            tokens_in += response.tokens_in
            tokens_out += response.tokens_out
            state.record_verdict(unit, int(item), order, record.generation_id,
                                 CallOutcome(info, PoolResult(response, ref, 0.0, attempt)))
        for record in records.values():
            self.tries[record.key] = self.tries.get(record.key, 0) + 1
        mark_read(state.store, job, ok=ok, errors=errors, tokens_in=tokens_in,
                  tokens_out=tokens_out)
