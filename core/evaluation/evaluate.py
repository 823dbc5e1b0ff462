"""Ours vs the GPT-4 baseline: sampled images, each comparison asked in both orders, resumable."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from visinstruct.core.config import Config, sees_images, spec_for
from visinstruct.core.errors import InputError
from visinstruct.core.evaluation.aggregate import (
    Summary,
    stored_verdict_rows,
    summarize,
    summarize_by_task,
)
from visinstruct.core.evaluation.batch import evaluate_by_batch
from visinstruct.core.evaluation.units import (
    NO_CANDIDATES,
    TASK_REQUESTS,
    Unit,
    candidate_units,
    chunks,
    load_units,
    sample_images,
    transcript,
)
from visinstruct.core.evaluation.verdicts import (
    Pictures,
    record_verdict,
    verdict_request,
)
from visinstruct.core.events import (
    Emit,
    EvaluationFinished,
    EvaluationNotice,
    EvaluationStarted,
    VerdictRecorded,
)
from visinstruct.core.models.backends.base import CompletionRequest
from visinstruct.core.models.calls import (
    CallOutcome,
    NotStored,
    StageContext,
    build_pools,
    fail_answered,
    make_call,
    store_result,
)
from visinstruct.core.models.ledger import Ledger, abandon_in_flight
from visinstruct.core.models.pictures import has_picture_folder
from visinstruct.core.sanitize.clean import clean_pair_text
from visinstruct.core.store.database import Store, now
from visinstruct.core.store.writer_lock import refuse_live_writer
from visinstruct.core.text.model_text import clean_model_text
from visinstruct.core.text.prompt_versions import active_template
from visinstruct.core.text.prompts import PromptTemplate, answer_messages

MODES = ("conversation", "answers")
ORDERS = ("ours", "baseline")
ANSWERS_PURPOSE = "answers"   # generations.purpose of our answers to the baseline's questions


@dataclass(frozen=True)
class EvaluationReport:
    """How an evaluation ended and its figures, over the sampled images."""

    status: str                 # finished | interrupted
    mode: str
    model: str
    sample: int                 # images asked for (0: all)
    images: int                 # images compared
    units: int                  # (image, task) compared
    verdicts: int               # verdicts stored for these units, this run and before
    new_calls: int              # calls made by this run that produced a stored result
    failed_calls: int
    missing_images: int
    notices: tuple[str, ...]
    overall: Summary
    by_task: dict[str, Summary] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The `evaluate --json` object: "overall" and "by_task" first, then the run's facts."""
        return {
            "overall": self.overall.to_dict(),
            "by_task": {task: summary.to_dict() for task, summary in self.by_task.items()},
            "mode": self.mode,
            "model": self.model,
            "status": self.status,
            "sample": {"requested": self.sample, "images": self.images, "units": self.units},
            "verdicts": self.verdicts,
            "new_calls": self.new_calls,
            "failed_calls": self.failed_calls,
            "missing_images": self.missing_images,
            "notices": list(self.notices),
        }


@dataclass(frozen=True)
class Comparison:
    """One compared item and the orders it still needs."""

    unit: Unit
    item: int
    orders: tuple[str, ...]


class Evaluation:
    """One evaluation's state while its workers go."""

    def __init__(self, config: Config, store: Store, emit: Emit, cancel: threading.Event,
                 mode: str, ctx: StageContext, template: PromptTemplate,
                 answer_template: PromptTemplate | None) -> None:
        self.config = config
        self.store = store
        self.emit = emit
        self.cancel = cancel
        self.mode = mode
        self.ctx = ctx
        self.template = template
        self.answer_template = answer_template
        self.model = config.evaluation.model
        self.lock = threading.Lock()
        self.done = 0
        self.total = 0
        self.new_calls = 0
        self.failed_calls = 0
        self.errors: list[str] = []
        self.answers: dict[tuple[int, str, int], tuple[str, int]] = {}
        self.pictures = Pictures(config)

    # -- what is already stored -------------------------------------------------------------
    def load_answers(self, units: Sequence[Unit]) -> None:
        """Our stored answers to the baseline's questions, with the generation holding them."""
        assert self.answer_template is not None
        ids = sorted({u.image.image_id for u in units})
        for chunk in chunks(ids):
            marks = ",".join("?" * len(chunk))
            for image_id, task, gid, idx, answer in self.store.query(
                    f"SELECT g.image_id, g.task, g.id, p.idx, p.answer FROM generations g "
                    f"JOIN pairs p ON p.generation_id = g.id WHERE g.purpose = ? "
                    f"AND g.prompt_version = ? AND g.model = ? AND g.image_id IN ({marks})",
                    (ANSWERS_PURPOSE, self.answer_template.version,
                     self.config.generation.model, *chunk)):
                self.answers[(image_id, task, idx)] = (answer, gid)

    def stored_verdicts(self, units: Sequence[Unit]) -> set[tuple[int, str, int, str, int]]:
        """(image, task, item, shown_first, generation) of verdicts already stored."""
        ids = sorted({u.image.image_id for u in units})
        found: set[tuple[int, str, int, str, int]] = set()
        for chunk in chunks(ids):
            marks = ",".join("?" * len(chunk))
            found.update((r[0], r[1], r[2], r[3], r[4]) for r in self.store.query(
                f"SELECT image_id, task, item, shown_first, generation_id FROM evaluations "
                f"WHERE mode = ? AND model = ? AND prompt_version = ? AND image_id IN ({marks})",
                (self.mode, self.model, self.template.version, *chunk)))
        return found

    def plan(self, units: Sequence[Unit]) -> list[Comparison]:
        """The jobs still to do; counts what is done and what there is in total."""
        if self.mode == "answers":
            self.load_answers(units)
        stored = self.stored_verdicts(units)
        jobs = []
        for unit in units:
            image_id = unit.image.image_id
            items = range(len(unit.baseline)) if self.mode == "answers" else range(1)
            for item in items:
                gid = self.generation_of(unit, item)
                left = tuple(o for o in ORDERS
                             if gid is None or (image_id, unit.task, item, o, gid) not in stored)
                self.total += len(ORDERS)
                self.done += len(ORDERS) - len(left)
                if not left:
                    continue
                # An answer must exist before either order can be asked, so one job does both.
                if self.mode == "answers":
                    jobs.append(Comparison(unit, item, left))
                else:
                    jobs.extend(Comparison(unit, item, (order,)) for order in left)
        return jobs

    def generation_of(self, unit: Unit, item: int) -> int | None:
        """The generation our side of an item comes from; None while unanswered."""
        if self.mode == "conversation":
            return unit.generation_id
        stored = self.answers.get((unit.image.image_id, unit.task, item))
        return stored[1] if stored else None

    # -- work ---------------------------------------------------------------------------------
    def run_job(self, job: Comparison) -> None:
        """Answer (in answers mode) and compare one item in its missing orders."""
        if self.cancel.is_set():
            return
        try:
            if self.mode == "answers":
                answered = self.answer(job.unit, job.item)
                if answered is None:
                    return
                ours, gid = answered
                question = job.unit.baseline[job.item]
                request, theirs = question.question, question.answer
            else:
                ours, gid = transcript(job.unit.ours), job.unit.generation_id
                request, theirs = TASK_REQUESTS[job.unit.task], transcript(job.unit.baseline)
            for order in job.orders:
                if self.cancel.is_set():
                    return
                self.compare(job.unit, job.item, order, request, ours, theirs, gid)
        except Exception as exc:  # noqa: BLE001 - one bad item must not stop a long evaluation
            self.count_failure(f"{type(exc).__name__}: {exc}")

    def failed(self, outcome: CallOutcome) -> None:
        """Count a call that ended in an error; it is sent again by the next evaluation."""
        if outcome.cancelled or self.cancel.is_set():
            return  # stopped, not failed: resume sends it again
        self.count_failure(str(outcome.error) if outcome.error is not None else None)

    def count_failure(self, error: str | None) -> None:
        """One more failed call, and why (the first reason is reported)."""
        with self.lock:
            self.failed_calls += 1
            if error is not None:
                self.errors.append(error)

    def answer(self, unit: Unit, item: int) -> tuple[str, int] | None:
        """Our generation model's answer to the baseline's question `item`, stored once."""
        key = (unit.image.image_id, unit.task, item)
        if key in self.answers:
            return self.answers[key]
        template = self.answer_template
        assert template is not None
        settings = self.config.generation
        question = unit.baseline[item].question
        request = CompletionRequest(
            messages=answer_messages(template, unit.image, question),
            max_tokens=settings.max_tokens, temperature=settings.temperature,
            top_p=settings.top_p, tag="answer")
        outcome = make_call(self.ctx, stage="answer", image_id=unit.image.image_id,
                            task=unit.task, model=settings.model,
                            prompt_version=template.version, request=request, item=str(item))
        if outcome.result is None:
            self.failed(outcome)
            return None
        result = outcome.result
        try:
            text = clean_pair_text(clean_model_text(result.response.text))
        except Exception as exc:  # noqa: BLE001 - a paid call ends in the ledger, as failed
            self.failed(fail_answered(self.ctx, outcome, exc))
            return None
        ledger = self.ctx.ledger

        def write(conn: sqlite3.Connection) -> int:
            ledger.finish_ok(conn, result.call_id, result.response, result.latency_ms)
            conn.execute(
                "INSERT OR IGNORE INTO generations (image_id, task, prompt_version, model, "
                "call_id, status, raw, problems, purpose, created_at) "
                "VALUES (?, ?, ?, ?, ?, 'ok', '', '[]', ?, ?)",
                (unit.image.image_id, unit.task, template.version, settings.model,
                 result.call_id, ANSWERS_PURPOSE, now()))
            gid = int(conn.execute(
                "SELECT id FROM generations WHERE image_id = ? AND task = ? AND "
                "prompt_version = ? AND model = ? AND purpose = ?",
                (unit.image.image_id, unit.task, template.version, settings.model,
                 ANSWERS_PURPOSE)).fetchone()[0])
            conn.execute("INSERT INTO pairs (generation_id, idx, question, answer) "
                         "VALUES (?, ?, ?, ?)", (gid, item, question, text))
            return gid

        gid = store_result(self.ctx, outcome, write, lambda _: None).result()
        if isinstance(gid, NotStored):
            self.failed(CallOutcome(outcome.info, None, gid.error))
            return None
        with self.lock:
            self.new_calls += 1
            self.answers[key] = (text, gid)
        self.emit(ledger.finished_event(outcome.info, result.call_id, result.response,
                                        result.latency_ms, result.attempt))
        return text, gid

    def comparison_request(self, unit: Unit, order: str, request_text: str, ours: str,
                           theirs: str) -> CompletionRequest:
        """The evaluator's request with `order`'s answer shown first."""
        return verdict_request(self.config, self.template, unit.image, request_text, ours,
                               theirs, order, self.pictures.load(unit.image))

    def compare(self, unit: Unit, item: int, order: str, request_text: str, ours: str,
                theirs: str, gid: int) -> None:
        """Ask the evaluator once, with `order`'s answer shown first; store the verdict."""
        image = unit.image
        request = self.comparison_request(unit, order, request_text, ours, theirs)
        outcome = make_call(self.ctx, stage="evaluate", image_id=image.image_id, task=unit.task,
                            model=self.model, prompt_version=self.template.version,
                            request=request, item=f"{self.mode}:{item}:{order}")
        if outcome.result is None:
            self.failed(outcome)
            return
        self.record_verdict(unit, item, order, gid, outcome)

    def record_verdict(self, unit: Unit, item: int, order: str, gid: int,
                       outcome: CallOutcome) -> None:
        """Store the verdict of a successful evaluator call (online or from a batch job)."""
        image = unit.image
        row, outcome = record_verdict(self.ctx, self.config, self.template, image, unit.task,
                                      mode=self.mode, item=item, order=order, generation_id=gid,
                                      outcome=outcome)
        if row is None:
            self.failed(outcome)
            return
        result = outcome.result
        assert result is not None
        with self.lock:
            self.new_calls += 1
            self.done += 1
            done = self.done
        self.emit(self.ctx.ledger.finished_event(outcome.info, result.call_id, result.response,
                                                 result.latency_ms, result.attempt))
        self.emit(VerdictRecorded(image.image_id, unit.task, self.mode, item, order,
                                  row.parsed, row.ours_score, row.baseline_score, done,
                                  self.total))


def evaluate(config: Config, store: Store, emit: Emit, cancel: threading.Event | None = None, *,
             mode: str = "conversation", sample: int | None = None,
             seed: int | None = None) -> EvaluationReport:
    """Compare our kept conversations (or our answers) with the baseline; safe to call again."""
    if mode not in MODES:
        raise InputError(f"--mode {mode!r}: use one of {', '.join(MODES)}")
    cancel = cancel or threading.Event()
    sample = config.evaluation.sample if sample is None else sample
    seed = config.evaluation.seed if seed is None else seed
    if sample < 0:
        raise InputError(f"--sample {sample}: give 0 (every image) or more")
    threshold = config.judge.threshold
    notices: list[str] = []

    def notice(message: str) -> None:
        notices.append(message)
        emit(EvaluationNotice(message))

    # A live run allocates ledger ids in the same table: evaluating beside it would collide.
    refuse_live_writer(store.path, "evaluate when it has finished or stop it first")
    candidates = candidate_units(store, threshold)
    if not candidates:
        raise InputError(f"{store.path}: {NO_CANDIDATES}")
    chosen = sample_images(list(candidates), sample, seed)
    if sample > len(candidates):
        notice(f"asked for {sample} images but only {len(candidates)} have both a kept "
               f"conversation and a baseline conversation of the same task; comparing all "
               f"{len(candidates)}")
    units = load_units(store, {i: candidates[i] for i in chosen}, threshold)
    template = active_template(store, "evaluate")
    answer_template = active_template(store, "answer") if mode == "answers" else None
    evaluator = config.model(config.evaluation.model)
    if has_picture_folder(config.source) and not sees_images(evaluator):
        notice(f"the evaluator {evaluator.name!r} does not take pictures; it compares on "
               f"captions and boxes only")
    names = [config.evaluation.model] + ([config.generation.model] if mode == "answers" else [])
    if mode == "answers" and config.generation.model in names \
            and spec_for(config.model(config.generation.model)).runs_batch_jobs:
        notice(f"{config.generation.model!r} is a bedrock-batch model; answers mode sends its "
               "answer calls on demand (same model id)")
    abandon_in_flight(store, ("evaluate", "answer"))
    backends, pools = build_pools(config, names, cancel)
    ctx = StageContext(store, Ledger(store, 0, emit), pools, emit, cancel)
    state = Evaluation(config, store, emit, cancel, mode, ctx, template, answer_template)
    try:
        jobs = state.plan(units)
        emit(EvaluationStarted(mode, state.model, len(chosen), len(units), state.total,
                               state.done))
        if spec_for(evaluator).runs_batch_jobs:
            jobs = evaluate_by_batch(state, jobs, evaluator, notice)
        workers = max(1, min(256, max(p.ceiling for p in pools.values()), len(jobs)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="evaluate") as executor:
            for _ in executor.map(state.run_job, jobs):
                pass
        store.flush()
    finally:
        for backend in backends.values():
            backend.close()
    if state.pictures.unusable:
        first = next(iter(state.pictures.unusable.values()))
        notice(f"{len(state.pictures.unusable)} sampled image(s) could not be shown to the "
               f"evaluator (first: {first}); they were compared on captions and boxes only")
    if state.failed_calls:
        first_error = state.errors[0] if state.errors else "unknown"
        notice(f"{state.failed_calls} call(s) failed (first: {first_error}); "
               f"run `visinstruct evaluate` again to retry them")
    expected = {(u.image.image_id, u.task, item): gid
                for u in units for item in range(len(u.baseline) if mode == "answers" else 1)
                if (gid := state.generation_of(u, item)) is not None}
    rows = stored_verdict_rows(store, mode, state.model, template.version, expected)
    overall = summarize(rows, seed=seed)
    status = "interrupted" if cancel.is_set() else "finished"
    emit(EvaluationFinished(status, mode, len(rows), overall.unparsed, state.failed_calls,
                            len(state.pictures.unusable), overall.relative_score))
    return EvaluationReport(
        status=status, mode=mode, model=state.model, sample=sample, images=len(chosen),
        units=len(units), verdicts=len(rows), new_calls=state.new_calls,
        failed_calls=state.failed_calls, missing_images=len(state.pictures.unusable),
        notices=tuple(notices), overall=overall, by_task=summarize_by_task(rows, seed=seed))
