"""The run: stream images through generation and judging on a pool of workers, resumably.

`run` wires the parts: the backlog (what is owed), the progress (what is done), the workers
and the batch stages, which are handed both.
"""

from __future__ import annotations

import functools
import queue
import sqlite3
import threading
import time
from collections.abc import Collection
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any

from visinstruct.core.config import Config
from visinstruct.core.errors import BudgetExceeded, StoreError
from visinstruct.core.events import (
    CallFinished,
    Dispatcher,
    Emit,
    EndpointFigures,
    EndpointHealth,
    Event,
    RunFinished,
    RunStarted,
)
from visinstruct.core.models.backends.base import Backend
from visinstruct.core.models.calls import StageContext, build_pools, was_stored
from visinstruct.core.models.ledger import Ledger, abandon_in_flight, error_text
from visinstruct.core.models.pool import unexpected_error
from visinstruct.core.pipeline.backlog import Backlog, Unit
from visinstruct.core.pipeline.batch import RunBatches, batch_stages
from visinstruct.core.pipeline.claim import claim
from visinstruct.core.pipeline.collector import run_collector
from visinstruct.core.pipeline.gating import flag_templates, regate_if_changed
from visinstruct.core.pipeline.generate import GenerationResult, generate
from visinstruct.core.pipeline.indexer import ensure_indexed
from visinstruct.core.pipeline.judge import JudgeResult
from visinstruct.core.pipeline.metering import check_budget, cost_event, monitor_costs
from visinstruct.core.pipeline.panel import judge_pairs, unjudged_pairs
from visinstruct.core.pipeline.progress import Progress
from visinstruct.core.pipeline.seeing import Sight
from visinstruct.core.pipeline.short_answer import write_short_answers
from visinstruct.core.records import FACT_TASKS, Pair, RunState, UnitNeed
from visinstruct.core.store.cost import CostMeter, cost_report
from visinstruct.core.store.database import RowRef, Store, now
from visinstruct.core.store.queries import KEPT_SQL, status_counts
from visinstruct.core.store.search import catch_up
from visinstruct.core.store.writer_lock import writer_lock

_DONE = object()


@dataclass(frozen=True)
class RunSummary:
    """How a run ended."""

    run_id: int
    status: RunState
    done_units: int
    total_units: int
    failed_units: int
    counts: dict[str, int]
    cost_usd: float
    elapsed_s: float
    error: str = ""      # why the run failed (status "failed"), redacted


class Workers:
    """What each worker thread does with the units it takes: generate, gate, judge, count."""

    def __init__(self, ctx: StageContext, backlog: Backlog, progress: Progress,
                 batched: Collection[str], sight: Sight | None = None) -> None:
        self.ctx = ctx
        self.backlog = backlog
        self.config = backlog.config
        self.progress = progress
        self.judge_by_batch = "judge" in batched  # judged by a batch job once generation is done
        self.sight = sight or Sight(self.config)

    def work(self, unit: Unit) -> bool | Future[Any]:
        """Do one unit; its outcome, or the write it waits on (a worker never waits on a commit)."""
        ctx, config, templates = self.ctx, self.config, self.backlog.templates
        if unit.task in FACT_TASKS:  # made from the facts: no model, no judge
            return write_short_answers(ctx, templates[unit.task], unit.image, unit.task)
        judge_template = self.backlog.judge_template
        sight = self.sight
        generating = unit.need is UnitNeed.GENERATE
        if sight.anyone:
            # Every picture this unit sends is ready before its first call, or it fails here.
            problem = sight.problem(unit.image, generating=generating,
                                    judging=not self.judge_by_batch)
            if problem is not None:
                sight.report(ctx.store, ctx.emit, ctx.ledger.run_id, unit.image, problem)
                return False
        if generating:
            generated = generate(ctx, templates[unit.task], unit.image, unit.task,
                                 config.generation, config.generation.model, gates=config.gates,
                                 picture=sight.picture(config.generation.model, unit.image))
            if not isinstance(generated, GenerationResult):
                return False
            if generated.parse_failure:
                return generated.written if generated.written is not None else True
            if generated.written is not None and generated.written.done() and not was_stored(
                    generated.written):
                return False  # its call is failed in the ledger; judging it would pay for nothing
            if self.judge_by_batch:
                return generated.written if generated.written is not None else True
            generation: RowRef = generated.ref
            targets: list[tuple[int, Pair]] = generated.passing()
        else:
            generation = RowRef(unit.generation_id)
            targets = unjudged_pairs(ctx.store, unit.generation_id, config.judge,
                                     judge_template.version)
        if not targets:
            return True  # every pair was gated: nothing for the judge
        if self.progress.stopped:
            return False
        judged = judge_pairs(ctx, judge_template, unit.image, unit.task, generation, targets,
                             config.judge, member_templates=self.backlog.member_templates,
                             pictures={name: sight.picture(name, unit.image)
                                       for name in config.judge.panel})
        if not isinstance(judged, JudgeResult):
            return False

        kept = judged.kept  # not `judged`: its future would hold this callback in a cycle
        progress = self.progress

        def count_kept(written: Future[Any] | None = None) -> None:
            if was_stored(written):
                progress.add_kept(kept)

        if judged.written is None:
            count_kept()
            return True
        judged.written.add_done_callback(count_kept)
        return judged.written

    def serve(self, jobs: queue.Queue[object]) -> None:
        """Take units until told to stop; a unit's failure is counted, never raised."""
        progress = self.progress
        while True:
            item = jobs.get()
            if item is _DONE:
                return
            assert isinstance(item, Unit)
            if progress.pause is not None:
                progress.hold_while_paused()
            if progress.stopped:
                continue
            outcome: bool | Future[Any]
            try:
                outcome = self.work(item)
            except Exception as exc:  # noqa: BLE001 - one bad unit must not stop a long run
                outcome = False
                self._record(error_text(unexpected_error(exc))[:500])
            if isinstance(outcome, Future):
                # Counted once its last write commits (the writer runs this): stored or failed.
                outcome.add_done_callback(functools.partial(self._finish_written, item))
            else:
                self._finish_after_writes(item, outcome)

    def _record(self, message: str) -> None:
        """Keep why a unit failed as the run's message."""
        run_id = self.ctx.ledger.run_id
        try:
            self.ctx.store.write_nowait(lambda c: c.execute(
                "UPDATE runs SET message = ? WHERE id = ?", (message, run_id)))
        except StoreError:
            pass  # the store is closing: the unit still counts as failed

    def _finish_after_writes(self, unit: Unit, ok: bool) -> None:
        """Count a unit once the writes it queued have committed.

        Its calls' events are sent when their rows commit (a failed call's too), so a unit
        finished straight away would say ImageDone before its own CallFinished. A no-op write
        queued behind them keeps the order; the writer runs writes and callbacks in turn.
        """
        try:
            marker = self.ctx.store.write(_no_write)
        except StoreError:
            self.finish(unit, ok)  # the store is closing: nothing queued is left to wait for
            return
        marker.add_done_callback(lambda _: self.finish(unit, ok))

    def _finish_written(self, unit: Unit, written: Future[Any]) -> None:
        self.finish(unit, was_stored(written))

    def finish(self, unit: Unit, ok: bool) -> None:
        """Count a finished unit and say so."""
        if not ok and self.progress.stopped:
            return  # abandoned by a stop: it will be done on resume, not counted as failed
        self.progress.finish_unit(unit.image.image_id, unit.task, ok)


def _no_write(_conn: sqlite3.Connection) -> None:
    """A write that changes nothing: a place in the writer's queue."""


def run(config: Config, store: Store, emit: Emit, cancel: threading.Event | None = None,
        pause: threading.Event | None = None) -> RunSummary:
    """Run generation and judging over the configured source; safe to call again to resume.

    Setting `cancel` stops taking new work; while `pause` is set no new unit starts. Events
    reach `emit` on a dispatcher thread, in order; every one is delivered before this returns.
    """
    dispatcher = Dispatcher(emit)
    try:
        with writer_lock(store.path), run_collector():
            return _run(config, store, dispatcher, cancel or threading.Event(), pause)
    finally:
        dispatcher.close()


def _run(config: Config, store: Store, outer_emit: Emit, cancel: threading.Event,
         pause: threading.Event | None) -> RunSummary:
    started = time.monotonic()
    ensure_indexed(config, store)
    meter = CostMeter(store, config)
    # Stages whose model runs Bedrock batch jobs: the batch stages do them, not the workers.
    batched = batch_stages(config)

    def emit(event: Event) -> None:
        # Metered where it happens (the budget must not wait for a display), then queued.
        if isinstance(event, CallFinished) and event.status == "ok":
            meter.add_call(event.model, event.tokens_in, event.tokens_out, event.endpoint)
            check_budget(progress, config, meter)
        outer_emit(event)

    progress = Progress(emit, cancel, pause)

    def on_health(snap: EndpointFigures) -> None:
        # The pool reports a few times a second per endpoint: these are for eyes, not for logs.
        emit(EndpointHealth(**asdict(snap)))

    backends, pools = build_pools(config, (config.generation.model, *config.judge.panel), cancel,
                                  on_health=on_health)
    try:
        backlog = Backlog.load(config, store)
        run_id = claim(store, config)
    except BaseException:
        _close(backends)
        raise
    status, error = RunState.FINISHED, ""
    threads: list[threading.Thread] = []
    jobs: queue.Queue[object] = queue.Queue()
    finished = threading.Event()
    monitor: threading.Thread | None = None
    batch: RunBatches | None = None
    counts: dict[str, int] = {}
    cost_usd = 0.0
    try:
        abandon_in_flight(store)
        regate_if_changed(store, config.gates)
        ledger = Ledger(store, run_id, emit)
        ctx = StageContext(store, ledger, pools, emit, cancel)
        total, done = backlog.count()
        progress.start(total, done, int(store.scalar(
            f"SELECT COUNT(*) FROM pair_state WHERE {KEPT_SQL}", (config.judge.threshold,)) or 0))
        # The units done at the start: a follower's rate counts this run's own units.
        store.write_sync(lambda c: c.execute(
            "UPDATE runs SET total_units = ?, start_done = ? WHERE id = ?",
            (total, done, run_id)))
        images = total // max(1, len(config.generation.tasks))
        emit(RunStarted(run_id, total, done, images, tuple(config.generation.tasks),
                        config.generation.model, config.judge.identity))
        sight = Sight(config)
        workers = Workers(ctx, backlog, progress, batched, sight)
        width = max(1, min(256, max(p.ceiling for p in pools.values())))
        jobs = queue.Queue(maxsize=width * 2)
        threads = [threading.Thread(target=workers.serve, args=(jobs,), daemon=True,
                                    name=f"worker-{i}") for i in range(width)]
        for thread in threads:
            thread.start()
        monitor = threading.Thread(target=monitor_costs,
                                   args=(progress, config, store, meter, emit, finished),
                                   daemon=True, name="cost-monitor")
        monitor.start()
        batch = RunBatches(ctx, backlog, progress, run_id, sight) if batched else None
        if batch is not None:
            batch.drive(("generate", "judge"))
        for unit in backlog.units(leave=batched):
            while not cancel.is_set():
                try:
                    jobs.put(unit, timeout=0.2)
                    break
                except queue.Full:
                    pass
            if cancel.is_set():
                break
        if batch is not None and "judge" in batched and "generate" not in batched:
            # Judging by batch after online generation: let the workers finish generating first.
            for _ in threads:
                jobs.put(_DONE)
            for thread in threads:
                thread.join()
            threads.clear()
            batch.drive(("judge",))
    except Exception as exc:  # noqa: BLE001 - recorded as the run's failure, then reported
        status, error = RunState.FAILED, error_text(unexpected_error(exc))
    finally:
        # The units already handed out still finish: their calls are paid for.
        for _ in threads:
            # A worker that died (its store closed under it) takes nothing: never wait on it.
            while any(thread.is_alive() for thread in threads):
                try:
                    jobs.put(_DONE, timeout=0.2)
                    break
                except queue.Full:
                    pass
        for thread in threads:
            thread.join()
        finished.set()
        if monitor is not None:
            monitor.join()
        try:
            store.flush()
            flag_templates(store, config.gates)
            catch_up(store)  # the review search finds this run's pairs without indexing them
            emit(cost_event(progress, store, config, meter))
            if status is not RunState.FAILED:
                status = progress.outcome()
            counts = status_counts(store, config.judge.threshold)
            store.write_sync(lambda c: c.execute(
                "UPDATE runs SET status = ?, finished_at = ?, message = COALESCE(?, message) "
                "WHERE id = ?", (status, now(), error or None, run_id)))
            cost_usd = cost_report(store, config).cost_usd
        except Exception as exc:  # noqa: BLE001 - the store itself failed: say so, still finish
            status = RunState.FAILED
            error = error or error_text(unexpected_error(exc))
        finally:
            _close(backends)
            if batch is not None:
                batch.close()
            elapsed = time.monotonic() - started
            emit(RunFinished(
                run_id, status, progress.done_units, progress.total_units,
                progress.failed_units, counts.get("pairs", 0), counts.get("kept_pairs", 0),
                counts.get("parse_failures", 0), counts.get("calls", 0),
                counts.get("failed_calls", 0), round(elapsed, 3), cost_usd,
                counts.get("dropped_pairs", 0), error))
    return RunSummary(run_id, status, progress.done_units, progress.total_units,
                      progress.failed_units, counts, cost_usd, elapsed, error)


def _close(backends: dict[str, Backend]) -> None:
    for backend in backends.values():
        try:
            backend.close()
        except Exception:  # noqa: BLE001 - closing is best effort; the run's outcome stands
            pass


__all__ = ["run", "RunSummary", "BudgetExceeded", "ensure_indexed"]
