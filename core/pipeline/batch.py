"""The run's stages through Bedrock batch jobs: which records they owe, and what replies become.

The job lifecycle itself is `core/models/batch_calls.py`. Each record's reply goes through the
same parse-and-store code as an online call, so a batch run's ledger, pairs and judgements look
exactly like an online run's. Records too few for a job, and images with nothing to describe,
go without one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from visinstruct.core.config import Config, ModelConfig, spec_for
from visinstruct.core.events import BatchNotice, BatchRecordsWaiting
from visinstruct.core.models.backends.bedrock_bodies import request_body
from visinstruct.core.models.batch_calls import BatchCalls, Outgoing
from visinstruct.core.models.calls import CallOutcome, StageContext
from visinstruct.core.models.ledger import call_key, request_hash
from visinstruct.core.models.pictures import PictureError
from visinstruct.core.pipeline.backlog import Backlog
from visinstruct.core.pipeline.generate import (
    GenerationResult,
    generate,
    generation_request,
    handle_generation,
)
from visinstruct.core.pipeline.judge import JudgeResult, handle_judgement, judge, judge_request
from visinstruct.core.pipeline.panel import unjudged_pairs
from visinstruct.core.pipeline.progress import Progress
from visinstruct.core.pipeline.seeing import Sight
from visinstruct.core.pipeline.short_answer import write_short_answers
from visinstruct.core.records import FACT_TASKS, Image
from visinstruct.core.store.batch_jobs import BatchJob, BatchRecord
from visinstruct.core.store.queries import load_images

_IMAGES_PER_QUERY = 500  # SQLite caps the parameters of one query


def batch_stages(config: Config) -> dict[str, str]:
    """{stage: model name} for the run's stages whose model is a batch model."""
    models = {"generate": config.generation.model, "judge": config.judge.model}
    return {stage: name for stage, name in models.items()
            if spec_for(config.model(name)).runs_batch_jobs}


class RunBatches:
    """The run's batch stages, driven to the end (or until stopped) by one job lifecycle."""

    def __init__(self, ctx: StageContext, backlog: Backlog, progress: Progress,
                 run_id: int, sight: Sight | None = None) -> None:
        self.store = ctx.store
        self.run_id = run_id
        config = backlog.config
        self.sight = sight or Sight(config)
        batched = batch_stages(config)
        self.calls = BatchCalls(ctx, config.models, run_id=run_id, folder=f"run-{run_id}",
                                note=self.note, pause=progress.pause)
        self.stages = {stage: _RunStage(stage, config.model(name), self, ctx, backlog, progress,
                                        counts_units=stage == "generate" or "generate" in batched)
                       for stage, name in batched.items()}

    def drive(self, stages: tuple[str, ...]) -> None:
        """Submit, poll and read until `stages` have nothing pending or open, or stop is set."""
        self.calls.drive([self.stages[s] for s in stages if s in self.stages])

    def note(self, message: str) -> None:
        """The run's message: what the user should know about its jobs."""
        self.store.write(lambda c: c.execute("UPDATE runs SET message = ? WHERE id = ?",
                                             (message[:500], self.run_id)))

    def close(self) -> None:
        """Close the AWS clients."""
        self.calls.close()


class _RunStage:
    """Generation or judging by batch: records from the backlog, replies into the store."""

    def __init__(self, name: str, model: ModelConfig, batches: RunBatches, ctx: StageContext,
                 backlog: Backlog, progress: Progress, *, counts_units: bool) -> None:
        self.name = name
        self.model = model
        self.after = "generate" if name == "judge" else ""
        self.batches = batches
        self.ctx = ctx
        self.backlog = backlog
        self.config = backlog.config
        self.progress = progress
        # Judging by batch after online generation: the workers counted each unit already.
        self.counts_units = counts_units
        self.sight = batches.sight
        self._no_picture: set[str] = set()  # keys of records failed for an unusable picture

    # -- records ------------------------------------------------------------------------------
    def records(self, *, bodies: bool) -> Iterator[Outgoing]:
        """Every unit still needing this stage, in image order; images with nothing to describe
        (and short answers) are written here, without a call, when bodies are asked for."""
        backlog, model, generating = self.backlog, self.model, self.name == "generate"
        for ids in backlog.image_pages():
            pending = [o for o in backlog.needs(ids) if o.need == self.name]
            if not pending:
                continue
            images = load_images(self.ctx.store, sorted({o.image_id for o in pending})) \
                if bodies else {}
            for owed in pending:
                template = backlog.templates[owed.task] if generating else backlog.judge_template
                item = "" if generating else str(owed.generation_id)
                key = call_key(self.name, owed.image_id, owed.task, template.version, model.name,
                               item)
                record = BatchRecord(key, key, owed.image_id, owed.task, template.version,
                                     owed.generation_id)
                if key in self._no_picture:
                    continue
                if not bodies:
                    yield Outgoing(record, {})
                    continue
                image = images[owed.image_id]
                if generating and (owed.task in FACT_TASKS or not image.has_context):
                    self._without_call(record, image)
                    continue
                try:
                    picture = self.sight.picture(model.name, image)
                except PictureError as error:
                    self._unusable(record, image, error)
                    continue
                if generating:
                    request = generation_request(template, image, self.config.generation,
                                                 owed.task, picture)
                else:
                    pairs = tuple(p for _, p in unjudged_pairs(
                        self.ctx.store, owed.generation_id, self.config.judge, template.version))
                    request = judge_request(template, image, pairs, self.config.judge, picture)
                yield Outgoing(replace(record, request_hash=request_hash(request)),
                               request_body(model.model_id, request))

    def _unusable(self, record: BatchRecord, image: Image, error: PictureError) -> None:
        """A record whose picture cannot be sent: no record, its unit fails, the file named."""
        self._no_picture.add(record.key)
        self.sight.report(self.ctx.store, self.ctx.emit, self.batches.run_id, image, error)
        if self.counts_units:
            self.progress.finish_unit(image.image_id, record.task, False)

    def _without_call(self, record: BatchRecord, image: Image) -> None:
        """Nothing to describe: generate() writes its counted row, no call; short answers are
        made from the image's facts."""
        task = record.task
        if task in FACT_TASKS:
            write_short_answers(self.ctx, self.backlog.templates[task], image, task)
            self.progress.finish_unit(image.image_id, task, True)
            return
        result = generate(self.ctx, self.backlog.templates[task], image, task,
                          self.config.generation, self.model.name)
        if isinstance(result, GenerationResult):
            self.progress.finish_unit(image.image_id, task, True)

    # -- replies ------------------------------------------------------------------------------
    def submitted(self, job: BatchJob) -> None:
        """Nothing more to say: the lifecycle's BatchJobUpdated reaches the displays."""

    def replies(self, answered: Sequence[tuple[BatchRecord, CallOutcome]]) -> None:
        """Store each reply as the online path would: a generation, or judgements."""
        wanted = sorted({record.image_id for record, _ in answered})
        images: dict[int, Image] = {}
        for start in range(0, len(wanted), _IMAGES_PER_QUERY):
            images.update(load_images(self.ctx.store, wanted[start:start + _IMAGES_PER_QUERY]))
        for record, outcome in answered:
            image = images.get(record.image_id)
            if image is not None:
                self._reply(record, image, outcome)

    def _reply(self, record: BatchRecord, image: Image, outcome: CallOutcome) -> None:
        if self.name == "generate":
            template = self.backlog.template_for(record.task, record.prompt_version)
            result = handle_generation(self.ctx, template, image, record.task, self.model.name,
                                       outcome, gates=self.config.gates,
                                       max_pairs=self.config.generation.max_pairs)
            if isinstance(result, CallOutcome):  # a reply that could not be read or stored
                self.progress.finish_unit(image.image_id, record.task, False)
            elif _nothing_to_judge(result):
                self.progress.finish_unit(image.image_id, record.task, True)
            return  # else its judging finishes the unit
        template = self.backlog.template_for("judge", record.prompt_version)
        # Gated pairs are never judged; pairs scored before (e.g. before [gates] changed) not again.
        targets = unjudged_pairs(self.ctx.store, record.generation_id, self.config.judge,
                                 record.prompt_version)
        judged = handle_judgement(self.ctx, template, image, record.task, record.generation_id,
                                  tuple(p for _, p in targets), self.config.judge,
                                  self.model.name, outcome, positions=[i for i, _ in targets])
        if isinstance(judged, JudgeResult):
            self.progress.add_kept(judged.kept)
        if self.counts_units:
            self.progress.finish_unit(image.image_id, record.task,
                                      isinstance(judged, JudgeResult))

    def failed(self, record: BatchRecord, *, final: bool) -> None:
        """On its last attempt a record is a failed unit (a stage whose jobs keep failing
        must still end); before that it goes into the next job."""
        if final and self.counts_units:
            self.progress.finish_unit(record.image_id, record.task, False)

    def notice(self, message: str) -> None:
        """Into the run's message, and to the displays."""
        self.batches.note(message)
        self.ctx.emit(BatchNotice(self.name, self.model.name, message))

    # -- too few for a job --------------------------------------------------------------------
    def remainder(self, records: list[Outgoing]) -> None:
        """The same model on demand, through its pool; or, if the config says so, wait."""
        if not self.model.on_demand_remainder:
            self.ctx.emit(BatchRecordsWaiting(self.name, self.model.name, len(records),
                                              self.model.min_records))
            return
        images: dict[int, Image] = {}
        wanted = sorted({r.record.image_id for r in records})
        for start in range(0, len(wanted), _IMAGES_PER_QUERY):
            images.update(load_images(self.ctx.store, wanted[start:start + _IMAGES_PER_QUERY]))

        def one(record: BatchRecord) -> None:
            if self.progress.stopped:
                return
            try:
                self._on_demand(record, images[record.image_id])
            except Exception as exc:  # noqa: BLE001 - one bad unit must not stop the rest
                self.batches.note(f"{type(exc).__name__}: {exc}")

        workers = max(1, min(len(records), self.model.max_in_flight))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="on-demand") as pool:
            list(pool.map(one, [r.record for r in records]))

    def _on_demand(self, record: BatchRecord, image: Image) -> None:
        task = record.task
        try:
            picture = self.sight.picture(self.model.name, image)
        except PictureError as error:
            self._unusable(record, image, error)
            return
        if self.name == "generate":
            generated = generate(self.ctx, self.backlog.templates[task], image, task,
                                 self.config.generation, self.model.name, gates=self.config.gates,
                                 picture=picture)
            if isinstance(generated, CallOutcome):
                if not generated.cancelled:
                    self.progress.finish_unit(image.image_id, task, False)
            elif _nothing_to_judge(generated):
                self.progress.finish_unit(image.image_id, task, True)
            return
        template = self.backlog.judge_template
        targets = unjudged_pairs(self.ctx.store, record.generation_id, self.config.judge,
                                 template.version)  # gated pairs are never judged
        judged = judge(self.ctx, template, image, task, record.generation_id,
                       [p for _, p in targets], self.config.judge, self.model.name,
                       indices=[idx for idx, _ in targets], picture=picture)
        if isinstance(judged, JudgeResult):
            self.progress.add_kept(judged.kept)
        if self.counts_units and not (isinstance(judged, CallOutcome) and judged.cancelled):
            self.progress.finish_unit(image.image_id, task, isinstance(judged, JudgeResult))


def _nothing_to_judge(result: GenerationResult) -> bool:
    """Unreadable, or every pair gated: no judge record follows, so the unit is done now."""
    return result.parse_failure or not result.passing()
