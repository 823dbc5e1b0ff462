"""The run: stream images through generation and judging on a pool of workers, resumably."""

from __future__ import annotations

import functools
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict
from typing import Any, Iterator

from visinstruct.core.models.backends.base import Backend
from visinstruct.core.config import Config
from visinstruct.core.store.cost import CostMeter, cost_report
from visinstruct.core.errors import BudgetExceeded, StoreError
from visinstruct.core.events import (CallFinished, Dispatcher, Event, Emit, EndpointFigures,
                                     EndpointHealth, ImageDone, RunFinished, RunStarted)
from visinstruct.core.pipeline.batch import BatchDriver, batch_stages
from visinstruct.core.pipeline.collector import run_collector
from visinstruct.core.pipeline.claim import claim
from visinstruct.core.store.writer_lock import writer_lock
from visinstruct.core.pipeline.metering import check_budget, cost_event, monitor_costs
from visinstruct.core.pipeline.summary import RunSummary, Unit
from visinstruct.core.pipeline.generate import GenerationResult, generate
from visinstruct.core.pipeline.indexer import ensure_indexed
from visinstruct.core.pipeline.gating import flag_templates, regate_if_changed
from visinstruct.core.pipeline.judge import JudgeResult
from visinstruct.core.pipeline.panel import judge_pairs, unjudged_pairs
from visinstruct.core.models.ledger import Ledger, abandon_in_flight, error_text
from visinstruct.core.models.pool import Pool, unexpected_error
from visinstruct.core.text.prompt_versions import active_template
from visinstruct.core.text.prompts import PromptTemplate
from visinstruct.core.store.queries import KEPT_SQL, load_images, status_counts
from visinstruct.core.store.search import catch_up
from visinstruct.core.pipeline.short_answer import write_short_answers
from visinstruct.core.records import FACT_TASKS, FACTS_MODEL, Pair, RunState, UnitNeed
from visinstruct.core.models.calls import StageContext, build_pools, was_stored
from visinstruct.core.store.database import RowRef, Store, now

_PAGE = 500
_DONE = object()


class _Runner:
    """Holds one run's state while its workers go."""

    def __init__(self, config: Config, store: Store, emit: Emit, cancel: threading.Event,
                 pause: threading.Event | None = None) -> None:
        self.config = config
        self.pause = pause
        self.store = store
        self.emit = emit
        self.cancel = cancel
        self.lock = threading.Lock()
        self.done_units = 0
        self.failed_units = 0
        self.total_units = 0
        self.budget_hit = False
        self.kept_pairs = 0     # kept pairs in the store, kept current as pairs are judged
        self.templates: dict[str, PromptTemplate] = {}
        self.judge_template: PromptTemplate | None = None
        self.backends: dict[str, Backend] = {}
        self.pools: dict[str, Pool] = {}
        # Stages whose model runs Bedrock batch jobs: the batch driver does them, not workers.
        self.batch: dict[str, str] = batch_stages(config)

    # -- set-up ---------------------------------------------------------------------------------
    def build_pools(self) -> None:
        self.backends, self.pools = build_pools(
            self.config, (self.config.generation.model, *self.config.judge.panel), self.cancel,
            on_health=self._on_health)

    def _on_health(self, snap: EndpointFigures) -> None:
        # The pool reports a few times a second per endpoint: these are for eyes, not for logs.
        self.emit(EndpointHealth(**asdict(snap)))

    # -- units ----------------------------------------------------------------------------------
    def image_pages(self) -> Iterator[list[int]]:
        limit = self.config.source.limit
        after, seen = -1, 0
        while True:
            size = _PAGE if not limit else min(_PAGE, limit - seen)
            if size <= 0:
                return
            ids = [r[0] for r in self.store.query(
                "SELECT id FROM images WHERE id > ? ORDER BY id LIMIT ?", (after, size))]
            if not ids:
                return
            yield ids
            seen += len(ids)
            after = ids[-1]

    def count_units(self) -> tuple[int, int]:
        limit = self.config.source.limit
        images = int(self.store.scalar("SELECT COUNT(*) FROM images") or 0)
        if limit:
            images = min(images, limit)
        total = images * len(self.config.generation.tasks)
        done = 0
        for ids in self.image_pages():
            done += sum(1 for _ in self._pending(ids, done_only=True))
        return total, done

    def _pending(self, ids: list[int], done_only: bool = False) -> Iterator[tuple[int, str, str, int]]:
        """(image_id, task, need, generation_id) for each unit of `ids`."""
        marks = ",".join("?" * len(ids))
        gen_model = self.config.generation.model
        judge_model = self.config.judge.identity
        assert self.judge_template is not None
        state: dict[tuple[int, str], tuple[int, str]] = {}
        for task in self.config.generation.tasks:
            version = self.templates[task].version
            for gid, image_id, status in self.store.query(
                    f"SELECT id, image_id, status FROM generations WHERE image_id IN ({marks}) "
                    f"AND task = ? AND prompt_version = ? AND model = ? AND purpose = 'run'",
                    (*ids, task, version, FACTS_MODEL if task in FACT_TASKS else gen_model)):
                state[(image_id, task)] = (gid, status)
        ok_ids = [gid for gid, status in state.values() if status == "ok"]
        # Judging is owed for a pair that passed the gates and has no score from this judge:
        # after [gates] changed, only the pairs that newly pass.
        owed: set[int] = set()
        if ok_ids:
            gmarks = ",".join("?" * len(ok_ids))
            owed = {r[0] for r in self.store.query(
                f"SELECT DISTINCT p.generation_id FROM pairs p WHERE p.generation_id IN ({gmarks}) "
                "AND NOT EXISTS (SELECT 1 FROM pair_gates x WHERE x.pair_id = p.id "
                "AND x.action = 'drop') AND NOT EXISTS (SELECT 1 FROM judgements j "
                "WHERE j.pair_id = p.id AND j.prompt_version = ? AND j.model = ?)",
                (*ok_ids, self.judge_template.version, judge_model))}
        for image_id in ids:
            for task in self.config.generation.tasks:
                gid, status = state.get((image_id, task), (0, ""))
                if not gid:
                    need = UnitNeed.GENERATE
                elif status == "ok" and gid in owed and task not in FACT_TASKS:
                    need = UnitNeed.JUDGE
                else:
                    need = UnitNeed.DONE
                if done_only and need is not UnitNeed.DONE:
                    continue
                if not done_only and need is UnitNeed.DONE:
                    continue
                yield image_id, task, need, gid

    def units(self) -> Iterator[Unit]:
        for ids in self.image_pages():
            pending = [p for p in self._pending(ids) if p[2] not in self.batch]
            if not pending:
                continue
            images = load_images(self.store, sorted({p[0] for p in pending}))
            for image_id, task, need, gid in pending:
                yield Unit(images[image_id], task, need, gid)

    # -- work -----------------------------------------------------------------------------------
    def work_unit(self, ctx: StageContext, unit: Unit) -> bool | Future[Any]:
        """Do one unit; its outcome, or the write it waits on (a worker never waits on a commit)."""
        gen_cfg, judge_cfg = self.config.generation, self.config.judge
        if unit.task in FACT_TASKS:  # made from the facts: no model, no judge
            return write_short_answers(ctx, self.templates[unit.task], unit.image, unit.task)
        if unit.need is UnitNeed.GENERATE:
            generated = generate(ctx, self.templates[unit.task], unit.image, unit.task, gen_cfg,
                                 gen_cfg.model, gates=self.config.gates)
            if not isinstance(generated, GenerationResult):
                return False
            if generated.parse_failure:
                return generated.written if generated.written is not None else True
            if generated.written is not None and generated.written.done() and not was_stored(
                    generated.written):
                return False  # its call is failed in the ledger; judging it would pay for nothing
            if "judge" in self.batch:
                # Judged by a batch job once generation is done.
                return generated.written if generated.written is not None else True
            generation: RowRef = generated.ref
            targets: list[tuple[int, Pair]] = generated.passing()
        else:
            assert self.judge_template is not None
            generation = RowRef(unit.generation_id)
            targets = unjudged_pairs(self.store, unit.generation_id, judge_cfg,
                                     self.judge_template.version)
        if not targets:
            return True  # every pair was gated: nothing for the judge
        if self.cancel.is_set():
            return False
        assert self.judge_template is not None
        judged = judge_pairs(ctx, self.judge_template, unit.image, unit.task, generation, targets,
                             judge_cfg)
        if not isinstance(judged, JudgeResult):
            return False

        kept = judged.kept  # not `judged`: its future would hold this callback in a cycle

        def count_kept(written: Future[Any] | None = None) -> None:
            if was_stored(written):
                with self.lock:
                    self.kept_pairs += kept

        if judged.written is None:
            count_kept()
            return True
        judged.written.add_done_callback(count_kept)
        return judged.written

    def worker(self, ctx: StageContext, jobs: "queue.Queue[object]") -> None:
        while True:
            item = jobs.get()
            if item is _DONE:
                return
            assert isinstance(item, Unit)
            # Paused: hold the unit (calls in flight finish) until resumed or stopped.
            while self.pause is not None and self.pause.is_set() and not self.cancel.is_set():
                self.cancel.wait(0.1)
            if self.cancel.is_set():
                continue
            outcome: bool | Future[Any]
            try:
                outcome = self.work_unit(ctx, item)
            except Exception as exc:  # noqa: BLE001 - one bad unit must not stop a long run
                outcome = False
                message = error_text(unexpected_error(exc))[:500]
                try:
                    self.store.write_nowait(lambda c: c.execute(
                        "UPDATE runs SET message = ? WHERE id = ?", (message, ctx.ledger.run_id)))
                except StoreError:
                    pass  # the store is closing: the unit still counts as failed below
            if isinstance(outcome, Future):
                # Counted once its last write commits (the writer runs this): stored or failed.
                outcome.add_done_callback(functools.partial(self._finish_written, item))
            else:
                self.finish_unit(item, outcome)

    def _finish_written(self, unit: Unit, written: Future[Any]) -> None:
        self.finish_unit(unit, was_stored(written))

    def finish_unit(self, unit: Unit, ok: bool) -> None:
        """Count a finished unit and say so."""
        if self.cancel.is_set() and not ok:
            return  # abandoned by a stop: it will be done on resume, not counted as failed
        with self.lock:
            self.done_units += 1
            if not ok:
                self.failed_units += 1
            done = self.done_units
        self.emit(ImageDone(unit.image.image_id, unit.task, ok, done, self.total_units))


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
    runner = _Runner(config, store, outer_emit, cancel, pause)
    meter = CostMeter(store, config)

    def metered_emit(event: Event) -> None:
        # Metered where it happens (the budget must not wait for a display), then queued.
        if isinstance(event, CallFinished) and event.status == "ok":
            meter.add_call(event.model, event.tokens_in, event.tokens_out, event.endpoint)
            check_budget(runner, config, meter)
        outer_emit(event)

    emit = metered_emit
    runner.emit = emit
    runner.build_pools()
    try:
        for task in config.generation.tasks:
            runner.templates[task] = active_template(store, task)
        runner.judge_template = active_template(store, "judge")
        run_id = claim(store, config)
    except BaseException:
        _close_backends(runner)
        raise
    status, error = RunState.FINISHED, ""
    threads: list[threading.Thread] = []
    jobs: queue.Queue[object] = queue.Queue()
    finished = threading.Event()
    monitor: threading.Thread | None = None
    batch: BatchDriver | None = None
    counts: dict[str, int] = {}
    cost_usd = 0.0
    try:
        abandon_in_flight(store)
        regate_if_changed(store, config.gates)
        ledger = Ledger(store, run_id, emit)
        ctx = StageContext(store, ledger, runner.pools, emit, cancel)
        total, done = runner.count_units()
        runner.total_units, runner.done_units = total, done
        runner.kept_pairs = int(store.scalar(
            f"SELECT COUNT(*) FROM pair_state WHERE {KEPT_SQL}", (config.judge.threshold,)) or 0)
        store.write_sync(lambda c: c.execute("UPDATE runs SET total_units = ? WHERE id = ?",
                                             (total, run_id)))
        images = total // max(1, len(config.generation.tasks))
        emit(RunStarted(run_id, total, done, images, tuple(config.generation.tasks),
                        config.generation.model, config.judge.identity))
        workers = max(1, min(256, max(p.ceiling for p in runner.pools.values())))
        jobs = queue.Queue(maxsize=workers * 2)
        threads = [threading.Thread(target=runner.worker, args=(ctx, jobs), daemon=True,
                                    name=f"worker-{i}") for i in range(workers)]
        for thread in threads:
            thread.start()
        monitor = threading.Thread(target=monitor_costs,
                                   args=(runner, config, store, meter, emit, finished),
                                   daemon=True, name="cost-monitor")
        monitor.start()
        batch = BatchDriver(runner, ctx, run_id) if runner.batch else None
        if batch is not None:
            batch.drive(("generate", "judge"))
        for unit in runner.units():
            while not cancel.is_set():
                try:
                    jobs.put(unit, timeout=0.2)
                    break
                except queue.Full:
                    pass
            if cancel.is_set():
                break
        if batch is not None and "judge" in runner.batch and "generate" not in runner.batch:
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
            emit(cost_event(runner, store, config, meter))
            if status is not RunState.FAILED:
                status = (RunState.BUDGET if runner.budget_hit
                          # A stop that lands after the last unit changes nothing.
                          else RunState.INTERRUPTED
                          if cancel.is_set() and runner.done_units < runner.total_units
                          else RunState.FINISHED)
            counts = status_counts(store, config.judge.threshold)
            store.write_sync(lambda c: c.execute(
                "UPDATE runs SET status = ?, finished_at = ?, message = COALESCE(?, message) "
                "WHERE id = ?", (status, now(), error or None, run_id)))
            cost_usd = cost_report(store, config).cost_usd
        except Exception as exc:  # noqa: BLE001 - the store itself failed: say so, still finish
            status = RunState.FAILED
            error = error or error_text(unexpected_error(exc))
        finally:
            _close_backends(runner)
            if batch is not None:
                batch.close()
            elapsed = time.monotonic() - started
            emit(RunFinished(
                run_id, status, runner.done_units, runner.total_units, runner.failed_units,
                counts.get("pairs", 0), counts.get("kept_pairs", 0),
                counts.get("parse_failures", 0), counts.get("calls", 0),
                counts.get("failed_calls", 0), round(elapsed, 3), cost_usd,
                counts.get("dropped_pairs", 0), error))
    return RunSummary(run_id, status, runner.done_units, runner.total_units, runner.failed_units,
                      counts, cost_usd, elapsed, error)


def _close_backends(runner: _Runner) -> None:
    for backend in runner.backends.values():
        try:
            backend.close()
        except Exception:  # noqa: BLE001 - closing is best effort; the run's outcome stands
            pass


__all__ = ["run", "RunSummary", "BudgetExceeded", "ensure_indexed"]
