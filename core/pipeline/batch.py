"""Stages through Bedrock batch jobs: submit a stage's pending requests, poll, read, write results.

Each record's reply goes through the same parse-and-store code as an online call, so a batch
run's ledger, pairs and judgements look exactly like an online run's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from visinstruct.core.config import Config, ModelConfig
from visinstruct.core.errors import BackendError
from visinstruct.core.events import (
    BatchJobUpdated,
    BatchNotice,
    BatchRecordsWaiting,
    ImageDone,
)
from visinstruct.core.models.backends.bedrock_batch import (
    Backoff,
    BatchClient,
    JobOutput,
    Reply,
    job_token,
    join_replies,
)
from visinstruct.core.models.calls import CallOutcome, StageContext
from visinstruct.core.models.pool import PoolResult
from visinstruct.core.pipeline.batch_on_demand import send_on_demand, write_without_call
from visinstruct.core.pipeline.batch_records import PendingRecord, pending_records
from visinstruct.core.pipeline.batch_replies import handle_reply
from visinstruct.core.store.batch_jobs import (
    BatchJob,
    BatchRecord,
    finished_keys,
    job_records,
    mark_read,
    open_jobs,
    save_job,
    set_status,
    tries_by_key,
    tries_this_run,
    unread_jobs,
)
from visinstruct.core.models.ledger import CallInfo
from visinstruct.core.text.prompt_versions import stored_template
from visinstruct.core.store.queries import load_images
from visinstruct.core.text.prompts import PromptTemplate

if TYPE_CHECKING:
    from visinstruct.core.pipeline.runner import _Runner

BACKEND = "bedrock-batch"
STAGES = ("generate", "judge")


def batch_stages(config: Config) -> dict[str, str]:
    """{stage: model name} for the run's stages whose model is a batch model."""
    models = {"generate": config.generation.model, "judge": config.judge.model}
    return {stage: name for stage, name in models.items()
            if config.model(name).backend == BACKEND}


@dataclass
class _Counts:
    ok: int = 0
    errors: int = 0
    tokens_in: int = 0
    tokens_out: int = 0


class BatchDriver:
    """Runs the run's batch stages to the end (or until cancelled), jobs first, remainders after."""

    def __init__(self, runner: _Runner, ctx: StageContext, run_id: int,
                 client: BatchClient | None = None) -> None:
        self.runner = runner
        self.ctx = ctx
        self.config: Config = runner.config
        self.store = ctx.store
        self.cancel: threading.Event = ctx.cancel
        self.run_id = run_id
        self.stages = batch_stages(self.config)
        self._clients: dict[str, BatchClient] = {}
        # Keys sent on demand in this run: never sent on demand twice (a failure stays failed).
        self._sent_on_demand: set[str] = set()
        # Stages whose jobs cannot be submitted (a permission or validation error): the run
        # stops submitting them and says why; their records stay pending for the next run.
        self._blocked: dict[str, str] = {}
        if client is not None:
            for name in self.stages.values():
                self._clients[self.config.model(name).region] = client

    # -- set-up -------------------------------------------------------------------------------
    def client(self, model: ModelConfig) -> BatchClient:
        if model.region not in self._clients:
            self._clients[model.region] = BatchClient(model.region)
        return self._clients[model.region]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    # -- the loop -----------------------------------------------------------------------------
    def drive(self, stages: tuple[str, ...]) -> None:
        """Submit, poll and read until `stages` have nothing pending or open, or cancel is set."""
        stages = tuple(s for s in stages if s in self.stages)
        # Pending work is read from the store: what the workers queued must be in it first.
        self.store.flush()
        if stages:
            self._drive(stages)
        left = open_jobs(self.store) if self.cancel.is_set() else []
        if left:
            # Stopping the run does not stop the jobs: they are paid for and finish on AWS.
            self.note(f"{len(left)} Bedrock batch job(s) still running on AWS; run again to "
                      "collect them, or `visinstruct batch stop` to stop them")

    def _drive(self, stages: tuple[str, ...]) -> None:
        backoff = Backoff(min(self.config.model(self.stages[s]).poll_seconds for s in stages))
        dirty = True
        pause = self.runner.pause
        while not self.cancel.is_set():
            # Paused: jobs already out are polled and read; nothing new is submitted.
            paused = pause is not None and pause.is_set()
            if dirty and not paused:
                dirty = False
                for stage in stages:
                    if stage in self._blocked:
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
            if self._poll(unread):
                backoff.reset()
                dirty = True
                continue
            self.cancel.wait(backoff.next())

    def _upstream_done(self, stage: str, stages: tuple[str, ...]) -> bool:
        """Judging may take its remainder once generation has nothing left to produce."""
        if stage != "judge" or "generate" not in stages:
            return True
        if unread_jobs(self.store, "generate"):
            return False
        return not any(True for _ in self._pending("generate", bodies=False))

    def _more_work(self, stages: tuple[str, ...]) -> bool:
        """Records still to submit after a pass that left no job open (on-demand results feed
        the next stage)."""
        for stage in stages:
            if stage in self._blocked:
                continue
            model = self.config.model(self.stages[stage])
            pending = sum(1 for r in self._pending(stage, bodies=False)
                          if r.record.key not in self._sent_on_demand)
            if pending >= model.min_records:
                return True
            if pending and model.on_demand_remainder:
                return True
        return False

    # -- submitting ---------------------------------------------------------------------------
    def _pending(self, stage: str, bodies: bool = True) -> Iterator[PendingRecord]:
        model = self.config.model(self.stages[stage])
        return pending_records(self.runner, self.run_id, stage, model, bodies=bodies)

    def _submit(self, stage: str, *, final: bool) -> None:
        model = self.config.model(self.stages[stage])
        tries = tries_by_key(self.store, stage)
        chunk: list[PendingRecord] = []
        for record in self._pending(stage):
            if self.cancel.is_set():
                return
            if record.no_call:
                self._no_call(record)
                continue
            chunk.append(record)
            if len(chunk) >= model.max_records_per_job:
                self._submit_job(stage, model, chunk, tries)
                chunk = []
        if not chunk:
            return
        if len(chunk) >= model.min_records:
            self._submit_job(stage, model, chunk, tries)
            return
        chunk = [r for r in chunk if r.record.key not in self._sent_on_demand]
        if not chunk:
            return
        if final and model.on_demand_remainder:
            self._sent_on_demand.update(r.record.key for r in chunk)
            self._on_demand(stage, model, chunk)
        elif final:
            self.ctx.emit(BatchRecordsWaiting(stage, model.name, len(chunk), model.min_records))

    def _submit_failed(self, stage: str, error: BackendError, backoff: Backoff) -> bool:
        """Back-pressure (too many jobs at once): wait and submit again; anything else stops
        the stage's submissions for this run. True when the next pass should submit again."""
        model = self.stages[stage]
        if error.kind == BackendError.BACKPRESSURE:
            self._notice(stage, model, f"batch job not accepted yet ({error}); trying again")
            self.cancel.wait(backoff.next())
            return True
        self._blocked[stage] = str(error)
        self._notice(stage, model, f"cannot submit {stage} batch jobs: {error}; their records "
                     "stay pending (fix the cause and run again)")
        # Counted as failed units, so the run ends with "some units failed" (exit 1).
        for record in self._pending(stage, bodies=False):
            self.unit_done(record.image.image_id, record.record.task, False)
        return False

    def _notice(self, stage: str, model: str, message: str) -> None:
        self.note(message)
        self.ctx.emit(BatchNotice(stage, model, message))

    def _submit_job(self, stage: str, model: ModelConfig, chunk: list[PendingRecord],
                    tries: dict[str, int]) -> None:
        client = self.client(model)
        token = job_token(stage, model.name, model.model_id,
                          [(r.record.key, r.record.request_hash) for r in chunk], tries)
        name = f"visinstruct-{stage}-{token[:24]}"
        base = f"{model.s3_uri.rstrip('/')}/run-{self.run_id}/{stage}/{name}/"
        lines = [json.dumps({"recordId": r.record.record_id, "modelInput": r.body},
                            ensure_ascii=False) for r in chunk]
        client.put_records(f"{base}records.jsonl", lines)
        arn = client.create_job(name=name, token=token, model_id=model.model_id,
                                role_arn=model.role_arn, input_uri=f"{base}records.jsonl",
                                output_uri=f"{base}output/", timeout_hours=model.timeout_hours)
        # A repeated token returns the first job, whose output may sit under an older run.
        state = client.job_state(arn)
        job = save_job(self.store, arn=arn, run_id=self.run_id, stage=stage, model=model.name,
                       model_id=model.model_id, region=model.region, token=token,
                       input_uri=f"{base}records.jsonl",
                       output_uri=state.output_uri or f"{base}output/",
                       status=state.status or "Submitted", message=state.message,
                       records=[r.record for r in chunk])
        self._announce(job)

    def _announce(self, job: BatchJob, ok: int = 0, errors: int = 0) -> None:
        self.ctx.emit(BatchJobUpdated(job.arn, job.job_id, job.stage, job.model, job.records,
                                      job.status, job.submitted_at, job.message, ok, errors))

    # -- polling and reading --------------------------------------------------------------------
    def _poll(self, jobs: list[BatchJob]) -> bool:
        """Ask after every open job and read each ended one; True when anything changed."""
        changed = False
        for job in jobs:
            if self.cancel.is_set():
                return changed
            model = self.config.models.get(job.model)
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
                    job = _replace_status(job, state.status, state.message, state.ended_at)
                    self._announce(job)
                    changed = True
                if not job.ended:
                    continue
            changed = self._read(job, model) or changed
        return changed

    def _read(self, job: BatchJob, model: ModelConfig) -> bool:
        """Write the ended job's records to the ledger; False when its output cannot be read
        yet (it is tried again on the next poll)."""
        records = job_records(self.store, job)
        try:
            output = self.client(model).read_output(job.output_uri, job.job_id)
        except BackendError as error:
            if job.status in ("Completed", "PartiallyCompleted"):
                self.note(f"reading batch job {job.job_id}: {error}")
                return False
            output = JobOutput((), {}, 0)
        if job.status not in ("Completed",):
            self._notice(job.stage, job.model,
                         f"batch job {job.job_id} ({job.stage}, {job.records} records) ended "
                         f"{job.status}: {job.message or 'no message'}; records without an "
                         "output go back to pending")
        endpoint = f"batch:{job.job_id}"
        done = finished_keys(self.store, endpoint, (r.key for r in records.values()))
        replies = join_replies(output, records, done, model.model_id, endpoint)
        self._count_lost(job, model, records, done | {r.key for r, _, _ in replies})
        counts = self._write(job, model, replies)
        mark_read(self.store, job, ok=counts.ok, errors=counts.errors,
                  tokens_in=counts.tokens_in, tokens_out=counts.tokens_out)
        self._announce(job, counts.ok, counts.errors)
        return True

    def _count_lost(self, job: BatchJob, model: ModelConfig, records: dict[str, BatchRecord],
                    returned: set[str]) -> None:
        """Records a job did not return go back to pending; on their last attempt they are
        failed units (a stage whose jobs keep failing must still end)."""
        lost = [r for r in records.values() if r.key not in returned]
        if not lost or (job.stage == "judge" and "generate" not in self.stages):
            return
        tries = tries_this_run(self.store, job.stage, self.run_id)
        for record in lost:
            if tries.get(record.key, 0) + 1 >= model.attempts:
                self.unit_done(record.image_id, record.task, False)

    def _write(self, job: BatchJob, model: ModelConfig,
               replies: list[Reply]) -> _Counts:
        counts = _Counts()
        if not replies:
            return counts
        images: dict[int, Any] = {}
        wanted = sorted({r.image_id for r, _, _ in replies})
        for start in range(0, len(wanted), 500):  # SQLite caps the parameters of one query
            images.update(load_images(self.store, wanted[start:start + 500]))
        tries = tries_this_run(self.store, job.stage, self.run_id)
        ended = job.ended_at or job.submitted_at
        latency_ms = max(0.0, (ended - job.submitted_at) * 1000)
        endpoint = f"batch:{job.job_id}"
        for record, response, error in replies:
            image = images.get(record.image_id)
            if image is None:
                continue
            attempt = tries.get(record.key, 0) + 1
            info = CallInfo(job.stage, record.image_id, record.task, model.name,
                            record.prompt_version, record.key, record.request_hash)
            listener = self.ctx.ledger.listener(info)
            ref = listener.started(endpoint, attempt)
            if response is None:
                assert error is not None
                counts.errors += 1
                retry = attempt < model.attempts
                listener.failed(ref, error, latency_ms, retry)
                if not retry and (job.stage == "generate" or "generate" in self.stages):
                    self.unit_done(image.image_id, record.task, False)
                continue
            counts.ok += 1
            counts.tokens_in += response.tokens_in
            counts.tokens_out += response.tokens_out
            outcome = CallOutcome(info, PoolResult(response, ref, latency_ms, attempt))
            handle_reply(self, job.stage, record, image, outcome)
        return counts

    # -- records that need no batch ---------------------------------------------------------------
    def _no_call(self, record: PendingRecord) -> None:
        write_without_call(self, record)

    def _on_demand(self, stage: str, model: ModelConfig, chunk: list[PendingRecord]) -> None:
        send_on_demand(self, stage, model, chunk)

    # -- accounting ----------------------------------------------------------------------------
    def unit_done(self, image_id: int, task: str, ok: bool) -> None:
        """A unit finished its last stage (or failed for good): count it as the workers do."""
        runner = self.runner
        with runner.lock:
            runner.done_units += 1
            if not ok:
                runner.failed_units += 1
            done = runner.done_units
        self.ctx.emit(ImageDone(image_id, task, ok, done, runner.total_units))

    def kept(self, kept: int) -> None:
        with self.runner.lock:
            self.runner.kept_pairs += kept

    def template_for(self, name: str, version: str) -> PromptTemplate:
        """The template a record was made with (the active one, or an older stored version)."""
        active = self.runner.judge_template if name == "judge" else self.runner.templates[name]
        if active is not None and active.version == version:
            return active
        return stored_template(self.store, version) or active  # type: ignore[return-value]

    def note(self, message: str) -> None:
        self.store.write(lambda c: c.execute("UPDATE runs SET message = ? WHERE id = ?",
                                             (message[:500], self.run_id)))


def _replace_status(job: BatchJob, status: str, message: str, ended_at: float | None) -> BatchJob:
    return replace(job, status=status, message=message, ended_at=ended_at or job.ended_at)
