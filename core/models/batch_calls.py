"""Calls by Bedrock batch job: the one lifecycle of submit, poll, read and resubmit, for any stage.

A stage (the run's generation and judging, evaluation's comparisons) gives its records and what
to do with each reply; everything between, and the ledger rows of every record, happens here.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from visinstruct.core.config import ModelConfig
from visinstruct.core.errors import BackendError
from visinstruct.core.events import BatchJobUpdated
from visinstruct.core.models.backends.bedrock_batch import (
    Backoff,
    BatchClient,
    JobOutput,
    Reply,
    job_token,
    join_replies,
)
from visinstruct.core.models.calls import CallOutcome, StageContext, storable_result
from visinstruct.core.models.ledger import CallInfo
from visinstruct.core.models.pool import PoolResult
from visinstruct.core.store.batch_jobs import (
    BatchJob,
    BatchRecord,
    failed_tries,
    finished_keys,
    job_records,
    keys_in_unread_jobs,
    mark_read,
    open_jobs,
    save_job,
    set_status,
    tries_by_key,
    unread_jobs,
)
from visinstruct.core.store.database import now

# Bedrock's largest batch input file is 1 GB; a job's records.jsonl stays below this.
MAX_INPUT_FILE_BYTES = 900_000_000


@dataclass(frozen=True)
class Outgoing:
    """One record a stage still owes: its stored description and its InvokeModel body.

    `body` is empty when the stage was asked for keys only (to count what is pending).
    """

    record: BatchRecord
    body: dict[str, Any]


def record_line(outgoing: Outgoing) -> str:
    """The JSON Lines record Bedrock reads: its id and its InvokeModel body."""
    return json.dumps({"recordId": outgoing.record.record_id, "modelInput": outgoing.body},
                      ensure_ascii=False)


def record_bytes(outgoing: Outgoing) -> int:
    """The record's size in the input file (a picture's base64 dominates; text is ASCII-ish)."""
    return len(record_line(outgoing).encode("utf-8")) + 1


class BatchStage(Protocol):
    """What a stage gives the lifecycle: how to build its records and what to do with a reply."""

    name: str            # the ledger's stage
    model: ModelConfig   # the bedrock-batch model its records go to
    after: str           # the stage whose results make this one's records ("" when none)

    def records(self, *, bodies: bool) -> Iterator[Outgoing]:
        """Every record the stage still owes, jobs or not (the lifecycle leaves out those out)."""
        ...

    def submitted(self, job: BatchJob) -> None:
        """A job of the stage's records was created and stored."""
        ...

    def replies(self, answered: Sequence[tuple[BatchRecord, CallOutcome]]) -> None:
        """Store the successful replies of one job (their ledger rows are in flight)."""
        ...

    def failed(self, record: BatchRecord, *, final: bool) -> None:
        """A record came back with an error or not at all; `final` when no attempt is left."""
        ...

    def remainder(self, records: list[Outgoing]) -> None:
        """Records too few for a job, once nothing upstream can add to them."""
        ...

    def notice(self, message: str) -> None:
        """Tell the user something about the stage's jobs."""
        ...


class BatchCalls:
    """Drives stages' records through Bedrock batch jobs until nothing is pending or open.

    Jobs are rows before anyone waits on them, so a stopped or killed process polls them on
    its next start instead of paying for them twice.
    """

    def __init__(self, ctx: StageContext, models: Mapping[str, ModelConfig], *,
                 run_id: int | None, folder: str, note: Callable[[str], None],
                 pause: threading.Event | None = None) -> None:
        self.ctx = ctx
        self.models = models          # by name: a job is read with the model that made it
        self.store = ctx.store
        self.cancel = ctx.cancel
        self.run_id = run_id
        self.folder = folder          # under each model's s3_uri: "run-7", "evaluation"
        self.note = note              # a quiet line for the record (polling trouble and such)
        self.pause = pause
        self.started = now()          # the scope of attempts when there is no run id
        self._clients: dict[str, BatchClient] = {}
        # Keys handed to a stage's remainder in this drive: never handed over twice.
        self._handed: set[str] = set()
        # Stages whose jobs cannot be submitted (a permission or validation error): no more
        # submissions this time; their records stay pending for the next start.
        self._blocked: set[str] = set()

    def client(self, model: ModelConfig) -> BatchClient:
        """The region's client, made once."""
        if model.region not in self._clients:
            self._clients[model.region] = BatchClient(model.region)
        return self._clients[model.region]

    def close(self) -> None:
        """Close every client made."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    # -- the loop ---------------------------------------------------------------------------------
    def drive(self, stages: Sequence[BatchStage]) -> None:
        """Submit, poll and read until `stages` have nothing pending or open, or cancel is set."""
        # Pending work is read from the store: what was queued for writing must be in it first.
        self.store.flush()
        if stages:
            self._drive({stage.name: stage for stage in stages})
        left = open_jobs(self.store) if self.cancel.is_set() else []
        if left:
            # Stopping does not stop the jobs: they are paid for and finish on AWS.
            self.note(f"{len(left)} Bedrock batch job(s) still running on AWS; run again to "
                      "collect them, or `visinstruct batch stop` to stop them")

    def _drive(self, stages: dict[str, BatchStage]) -> None:
        backoff = Backoff(min(stage.model.poll_seconds for stage in stages.values()))
        dirty = True
        while not self.cancel.is_set():
            # Paused: jobs already out are polled and read; nothing new is submitted.
            paused = self.pause is not None and self.pause.is_set()
            if dirty and not paused:
                dirty = False
                for stage in stages.values():
                    if stage.name in self._blocked:
                        continue
                    try:
                        self._submit(stage, final=self._upstream_done(stage, stages))
                    except BackendError as error:
                        dirty = self._submit_failed(stage, error, backoff) or dirty
                    if self.cancel.is_set():
                        return
            unread = [job for job in unread_jobs(self.store) if job.stage in stages]
            if not unread and paused:
                self.cancel.wait(0.2)
                continue
            if not unread:
                if self._more_work(stages):
                    dirty = True
                    continue
                return
            if self._poll(unread, stages):
                backoff.reset()
                dirty = True
                continue
            self.cancel.wait(backoff.next())

    def pending(self, stage: BatchStage, *, bodies: bool = True) -> Iterator[Outgoing]:
        """The stage's records that are in no unread job and have attempts left."""
        in_jobs = keys_in_unread_jobs(self.store, stage.name)
        tries = self._tries(stage.name)
        attempts = stage.model.attempts
        for outgoing in stage.records(bodies=bodies):
            key = outgoing.record.key
            if key not in in_jobs and tries.get(key, 0) < attempts:
                yield outgoing

    def _tries(self, stage: str) -> dict[str, int]:
        return failed_tries(self.store, stage, run_id=self.run_id, since=self.started)

    def _upstream_done(self, stage: BatchStage, stages: dict[str, BatchStage]) -> bool:
        """A stage may take its remainder once the stage feeding it has nothing left to give."""
        upstream = stages.get(stage.after)
        if upstream is None:
            return True
        if unread_jobs(self.store, upstream.name):
            return False
        return not any(True for _ in self.pending(upstream, bodies=False))

    def _more_work(self, stages: dict[str, BatchStage]) -> bool:
        """Records still to submit after a pass that left no job open (a remainder's results
        feed the next stage)."""
        # A remainder sent on demand queued its results for writing; the next stage's records
        # are read from the store, so they must be in it (else they are missed under load).
        self.store.flush()
        for stage in stages.values():
            if stage.name in self._blocked:
                continue
            waiting = sum(1 for r in self.pending(stage, bodies=False)
                          if r.record.key not in self._handed)
            if waiting >= stage.model.min_records or (waiting and stage.model.on_demand_remainder):
                return True
        return False

    # -- submitting -------------------------------------------------------------------------------
    def _submit(self, stage: BatchStage, *, final: bool) -> None:
        model = stage.model
        tries = tries_by_key(self.store, stage.name)
        chunk: list[Outgoing] = []
        size = 0
        for outgoing in self.pending(stage):
            if self.cancel.is_set():
                return
            # Records with pictures are large: a job's input file stays under Bedrock's limit.
            line = record_bytes(outgoing)
            if chunk and size + line > MAX_INPUT_FILE_BYTES:
                self.submit(stage, chunk, tries)
                chunk, size = [], 0
            chunk.append(outgoing)
            size += line
            if len(chunk) >= model.max_records_per_job:
                self.submit(stage, chunk, tries)
                chunk, size = [], 0
        if len(chunk) >= model.min_records:
            self.submit(stage, chunk, tries)
            return
        chunk = [r for r in chunk if r.record.key not in self._handed]
        if chunk and final:
            self._handed.update(r.record.key for r in chunk)
            stage.remainder(chunk)

    def submit(self, stage: BatchStage, chunk: list[Outgoing], tries: dict[str, int]) -> BatchJob:
        """Write the records, create the job under a token made from them, and store it.

        The same records in the same round make the same token, so a process that died between
        creating the job and storing it gets the first job back instead of a second one.
        """
        model = stage.model
        client = self.client(model)
        token = job_token(stage.name, model.name, model.model_id,
                          [(r.record.key, r.record.request_hash) for r in chunk], tries)
        name = f"visinstruct-{stage.name}-{token[:24]}"
        base = f"{model.s3_uri.rstrip('/')}/{self.folder}/{stage.name}/{name}/"
        lines = [record_line(r) for r in chunk]
        client.put_records(f"{base}records.jsonl", lines)
        arn = client.create_job(name=name, token=token, model_id=model.model_id,
                                role_arn=model.role_arn, input_uri=f"{base}records.jsonl",
                                output_uri=f"{base}output/", timeout_hours=model.timeout_hours)
        # A repeated token returns the first job, whose output may sit under an older folder.
        state = client.job_state(arn)
        job = save_job(self.store, arn=arn, run_id=self.run_id, stage=stage.name,
                       model=model.name, model_id=model.model_id, region=model.region,
                       token=token, input_uri=f"{base}records.jsonl",
                       output_uri=state.output_uri or f"{base}output/",
                       status=state.status or "Submitted", message=state.message,
                       records=[r.record for r in chunk])
        self._announce(job)
        stage.submitted(job)
        return job

    def _submit_failed(self, stage: BatchStage, error: BackendError, backoff: Backoff) -> bool:
        """Back-pressure (too many jobs at once): wait and submit again; anything else stops
        the stage's submissions and fails its records for now. True: submit again next pass."""
        if error.kind == BackendError.BACKPRESSURE:
            stage.notice(f"batch job not accepted yet ({error}); trying again")
            self.cancel.wait(backoff.next())
            return True
        self._blocked.add(stage.name)
        stage.notice(f"cannot submit {stage.name} batch jobs: {error}; their records stay "
                     "pending (fix the cause and run again)")
        for outgoing in self.pending(stage, bodies=False):
            stage.failed(outgoing.record, final=True)
        return False

    def _announce(self, job: BatchJob, ok: int = 0, errors: int = 0) -> None:
        self.ctx.emit(BatchJobUpdated(job.arn, job.job_id, job.stage, job.model, job.records,
                                      job.status, job.submitted_at, job.message, ok, errors))

    # -- polling and reading ----------------------------------------------------------------------
    def _poll(self, jobs: list[BatchJob], stages: dict[str, BatchStage]) -> bool:
        """Ask after every open job and read each ended one; True when anything changed."""
        changed = False
        for job in jobs:
            if self.cancel.is_set():
                return changed
            model = self.models.get(job.model)
            if model is None:
                self.note(f"batch job {job.job_id} belongs to model {job.model!r}, which this "
                          "config no longer defines; it is left unread")
                continue
            if not job.ended:
                try:
                    state = self.client(model).job_state(job.arn)
                except BackendError as error:
                    self.note(f"polling batch job {job.job_id}: {error}")
                    continue
                if state.status != job.status or state.message != job.message:
                    set_status(self.store, job, state.status, state.message, state.ended_at)
                    job = replace(job, status=state.status, message=state.message,
                                  ended_at=state.ended_at or job.ended_at)
                    self._announce(job)
                    changed = True
                if not job.ended:
                    continue
            changed = self._read(job, stages[job.stage], model) or changed
        return changed

    def _read(self, job: BatchJob, stage: BatchStage, model: ModelConfig) -> bool:
        """Write the ended job's records to the ledger and hand the replies to the stage; False
        when its output cannot be read yet (it is tried again on the next poll)."""
        records = job_records(self.store, job)
        try:
            output = self.client(model).read_output(job.output_uri, job.job_id)
        except BackendError as error:
            if job.status in ("Completed", "PartiallyCompleted"):
                self.note(f"reading batch job {job.job_id}: {error}")
                return False
            output = JobOutput((), {}, 0)
        if job.status != "Completed":
            stage.notice(f"batch job {job.job_id} ({job.stage}, {job.records} records) ended "
                         f"{job.status}: {job.message or 'no message'}; records without an "
                         "output go back to pending")
        endpoint = f"batch:{job.job_id}"
        done = finished_keys(self.store, endpoint, (r.key for r in records.values()))
        replies = join_replies(output, records, done, model.model_id, endpoint)
        tries = self._tries(job.stage)
        returned = done | {record.key for record, _, _ in replies}
        for record in records.values():
            if record.key not in returned:
                stage.failed(record, final=tries.get(record.key, 0) + 1 >= model.attempts)
        ok, errors, tokens_in, tokens_out = self._write(job, stage, model, replies, tries)
        mark_read(self.store, job, ok=ok, errors=errors, tokens_in=tokens_in,
                  tokens_out=tokens_out)
        self._announce(job, ok, errors)
        return True

    def _write(self, job: BatchJob, stage: BatchStage, model: ModelConfig, replies: list[Reply],
               tries: dict[str, int]) -> tuple[int, int, int, int]:
        """Ledger rows for every reply; the answered ones go to the stage. Returns (ok, errors,
        tokens in, tokens out)."""
        # A record's latency is its job's: Bedrock does not time records one by one.
        latency_ms = max(0.0, ((job.ended_at or job.submitted_at) - job.submitted_at) * 1000)
        endpoint = f"batch:{job.job_id}"
        answered: list[tuple[BatchRecord, CallOutcome]] = []
        errors = tokens_in = tokens_out = 0
        for record, response, error in replies:
            attempt = tries.get(record.key, 0) + 1
            pictures = response.extra.get("pictures", 0) if response is not None else 0
            info = CallInfo(job.stage, record.image_id, record.task, model.name,
                            record.prompt_version, record.key, record.request_hash, pictures)
            listener = self.ctx.ledger.listener(info)
            ref = listener.started(endpoint, attempt)
            if response is None:
                assert error is not None
                errors += 1
                retry = attempt < model.attempts
                listener.failed(ref, error, latency_ms, retry)
                stage.failed(record, final=not retry)
                continue
            tokens_in += response.tokens_in
            tokens_out += response.tokens_out
            answered.append((record, CallOutcome(info, storable_result(
                PoolResult(response, ref, latency_ms, attempt)))))
        if answered:
            stage.replies(answered)
        return len(answered), errors, tokens_in, tokens_out
