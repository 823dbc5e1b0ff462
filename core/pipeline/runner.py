"""The run: stream images through generation and judging on a pool of workers, resumably."""

from __future__ import annotations

import json
import os
import queue
import socket
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from typing import Iterator

from visinstruct.core.models.backends.base import Backend
from visinstruct.core.config import Config
from visinstruct.core.models.cost import CostMeter, cost_report
from visinstruct.core.errors import BudgetExceeded, StoreError
from visinstruct.core.events import (
    CallFinished,
    CostUpdated,
    Event,
    Emit,
    EndpointHealth,
    ImageDone,
    RunFinished,
    RunStarted,
)
from visinstruct.core.pipeline.generate import GenerationResult, generate
from visinstruct.core.pipeline.indexer import index_sources, source_fingerprint
from visinstruct.core.pipeline.judge import JudgeResult, judge, stored_pairs
from visinstruct.core.store.ledger import Ledger, abandon_in_flight
from visinstruct.core.store.run_config import settings_json
from visinstruct.core.models.pool import EndpointSnapshot, Pool
from visinstruct.core.store.prompt_versions import active_template
from visinstruct.core.text.prompts import PromptTemplate
from visinstruct.core.store.queries import KEPT_SQL, load_images, status_counts
from visinstruct.core.records import Image, Pair
from visinstruct.core.models.calls import StageContext, build_pools
from visinstruct.core.store.database import RowRef, Store, now

_PAGE = 500
_DONE = object()


@dataclass(frozen=True)
class Unit:
    """One (image, task) and what it still needs: 'generate' (then judge) or only 'judge'."""

    image: Image
    task: str
    need: str
    generation_id: int = 0


@dataclass(frozen=True)
class RunSummary:
    """How a run ended."""

    run_id: int
    status: str
    done_units: int
    total_units: int
    failed_units: int
    counts: dict[str, int]
    cost_usd: float
    elapsed_s: float


def ensure_indexed(config: Config, store: Store) -> None:
    """Index the configured source unless this store already holds exactly it."""
    if config.source.coco_captions is None and config.source.baseline is None:
        return
    if store.get_meta("source_fingerprint") != source_fingerprint(config.source):
        index_sources(store, config.source)


def _claim(store: Store, config: Config) -> int:
    """Refuse a second live writer; mark dead runs interrupted; insert this run's row."""
    host = socket.gethostname()
    for _other, pid, run_host in store.query(
            "SELECT id, pid, host FROM runs WHERE status = 'running'"):
        if run_host == host and pid and pid != os.getpid() and _alive(pid):
            raise StoreError(f"{store.path}: another run (pid {pid}) is writing this store; "
                             "stop it first or use another --db")
    settings = settings_json(config)  # the whole config, so the app can resume with it

    def work(conn: sqlite3.Connection) -> int:
        conn.execute("UPDATE runs SET status = 'interrupted', finished_at = COALESCE(finished_at, ?) "
                     "WHERE status = 'running'", (now(),))
        cursor = conn.execute(
            "INSERT INTO runs (started_at, status, pid, host, config) VALUES (?, 'running', ?, ?, ?)",
            (now(), os.getpid(), host, settings))
        return int(cursor.lastrowid or 0)

    run_id: int = store.write_sync(work)
    store.set_meta("judge_threshold", str(config.judge.threshold))
    store.set_meta("tasks", json.dumps(list(config.generation.tasks)))
    store.set_meta("models", json.dumps({n: asdict(m) for n, m in config.models.items()},
                                        default=str))
    return run_id


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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

    # -- set-up ---------------------------------------------------------------------------------
    def build_pools(self) -> None:
        self.backends, self.pools = build_pools(
            self.config, (self.config.generation.model, self.config.judge.model), self.cancel,
            on_health=self._on_health)

    def _on_health(self, snap: EndpointSnapshot) -> None:
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
        """(image_id, task, need, generation_id) for each unit of `ids`; need '' means done."""
        marks = ",".join("?" * len(ids))
        gen_model = self.config.generation.model
        judge_model = self.config.judge.model
        assert self.judge_template is not None
        state: dict[tuple[int, str], tuple[int, str]] = {}
        for task in self.config.generation.tasks:
            version = self.templates[task].version
            for gid, image_id, status in self.store.query(
                    f"SELECT id, image_id, status FROM generations WHERE image_id IN ({marks}) "
                    f"AND task = ? AND prompt_version = ? AND model = ? AND purpose = 'run'",
                    (*ids, task, version, gen_model)):
                state[(image_id, task)] = (gid, status)
        ok_ids = [gid for gid, status in state.values() if status == "ok"]
        judged: set[int] = set()
        if ok_ids:
            gmarks = ",".join("?" * len(ok_ids))
            judged = {r[0] for r in self.store.query(
                f"SELECT DISTINCT generation_id FROM judgements WHERE generation_id IN ({gmarks}) "
                "AND prompt_version = ? AND model = ?",
                (*ok_ids, self.judge_template.version, judge_model))}
        for image_id in ids:
            for task in self.config.generation.tasks:
                gid, status = state.get((image_id, task), (0, ""))
                if not gid:
                    need = "generate"
                elif status == "ok" and gid not in judged:
                    need = "judge"
                else:
                    need = ""
                if done_only and need:
                    continue
                if not done_only and not need:
                    continue
                yield image_id, task, need, gid

    def units(self) -> Iterator[Unit]:
        for ids in self.image_pages():
            pending = list(self._pending(ids))
            if not pending:
                continue
            images = load_images(self.store, sorted({p[0] for p in pending}))
            for image_id, task, need, gid in pending:
                yield Unit(images[image_id], task, need, gid)

    # -- work -----------------------------------------------------------------------------------
    def work_unit(self, ctx: StageContext, unit: Unit) -> bool:
        gen_cfg, judge_cfg = self.config.generation, self.config.judge
        if unit.need == "generate":
            generated = generate(ctx, self.templates[unit.task], unit.image, unit.task, gen_cfg,
                                 gen_cfg.model)
            if not isinstance(generated, GenerationResult):
                return False
            if generated.parse_failure:
                return True
            generation: RowRef = generated.ref
            pairs: list[Pair] = list(generated.pairs)
        else:
            generation = RowRef(unit.generation_id)
            pairs = [p for _, p in stored_pairs(self.store, unit.generation_id)]
        if self.cancel.is_set():
            return False
        assert self.judge_template is not None
        judged = judge(ctx, self.judge_template, unit.image, unit.task, generation, pairs,
                       judge_cfg, judge_cfg.model)
        if not isinstance(judged, JudgeResult):
            return False
        with self.lock:
            self.kept_pairs += judged.kept
        return True

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
            try:
                ok = self.work_unit(ctx, item)
            except Exception as exc:  # noqa: BLE001 - one bad unit must not stop a long run
                ok = False
                self.store.write(lambda c, e=exc: c.execute(
                    "UPDATE runs SET message = ? WHERE id = ?",
                    (f"{type(e).__name__}: {e}"[:500], ctx.ledger.run_id)))
            if self.cancel.is_set() and not ok:
                continue  # abandoned by a stop: it will be done on resume, not counted as failed
            with self.lock:
                self.done_units += 1
                if not ok:
                    self.failed_units += 1
                done = self.done_units
            self.emit(ImageDone(item.image.image_id, item.task, ok, done, self.total_units))


def run(config: Config, store: Store, emit: Emit, cancel: threading.Event | None = None,
        pause: threading.Event | None = None) -> RunSummary:
    """Run generation and judging over the configured source; safe to call again to resume.

    Setting `cancel` stops taking new work; while `pause` is set no new unit starts.
    """
    cancel = cancel or threading.Event()
    started = time.monotonic()
    ensure_indexed(config, store)
    runner = _Runner(config, store, emit, cancel, pause)
    meter = CostMeter(store, config)
    outer_emit = emit

    def metered_emit(event: Event) -> None:
        if isinstance(event, CallFinished) and event.status == "ok":
            meter.add_call(event.model, event.tokens_in, event.tokens_out)
            _check_budget(runner, config, meter)
        outer_emit(event)

    emit = metered_emit
    runner.emit = emit
    runner.build_pools()
    for task in config.generation.tasks:
        runner.templates[task] = active_template(store, task)
    runner.judge_template = active_template(store, "judge")
    run_id = _claim(store, config)
    abandon_in_flight(store)
    ledger = Ledger(store, run_id, emit)
    ctx = StageContext(store, ledger, runner.pools, emit, cancel)
    total, done = runner.count_units()
    runner.total_units, runner.done_units = total, done
    runner.kept_pairs = int(store.scalar(f"SELECT COUNT(*) FROM pair_state WHERE {KEPT_SQL}",
                                         (config.judge.threshold,)) or 0)
    store.write_sync(lambda c: c.execute("UPDATE runs SET total_units = ? WHERE id = ?",
                                         (total, run_id)))
    images = total // max(1, len(config.generation.tasks))
    emit(RunStarted(run_id, total, done, images, tuple(config.generation.tasks),
                    config.generation.model, config.judge.model))
    workers = max(1, min(256, max(p.ceiling for p in runner.pools.values())))
    jobs: queue.Queue[object] = queue.Queue(maxsize=workers * 2)
    threads = [threading.Thread(target=runner.worker, args=(ctx, jobs), daemon=True,
                                name=f"worker-{i}") for i in range(workers)]
    for thread in threads:
        thread.start()
    status = "finished"
    finished = threading.Event()
    monitor = threading.Thread(target=_monitor, args=(runner, config, store, meter, emit, finished),
                               daemon=True, name="cost-monitor")
    monitor.start()
    try:
        for unit in runner.units():
            while not cancel.is_set():
                try:
                    jobs.put(unit, timeout=0.2)
                    break
                except queue.Full:
                    pass
            if cancel.is_set():
                break
    finally:
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
        monitor.join()
        store.flush()
        emit(_cost_event(runner, store, config, meter))
        if runner.budget_hit:
            status = "budget"
        elif cancel.is_set() and runner.done_units < total:
            status = "interrupted"  # a stop that lands after the last unit changes nothing
        counts = status_counts(store, config.judge.threshold)
        elapsed = time.monotonic() - started
        store.write_sync(lambda c: c.execute(
            "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?", (status, now(), run_id)))
        report = cost_report(store, config)
        for backend in runner.backends.values():
            backend.close()
    emit(RunFinished(run_id, status, runner.done_units, total, runner.failed_units,
                     counts["pairs"], counts["kept_pairs"], counts["parse_failures"],
                     counts["calls"], counts["failed_calls"], round(elapsed, 3), report.cost_usd))
    return RunSummary(run_id, status, runner.done_units, total, runner.failed_units, counts,
                      report.cost_usd, elapsed)


def _monitor(runner: _Runner, config: Config, store: Store, meter: CostMeter, emit: Emit,
             finished: threading.Event) -> None:
    """Twice a second: the budget (instance-hours grow with time); every 2 s the cost event."""
    ticks = 0
    while not finished.wait(0.5):
        _check_budget(runner, config, meter)
        ticks += 1
        if ticks % 4 == 0:
            emit(_cost_event(runner, store, config, meter))


def _cost_event(runner: _Runner, store: Store, config: Config, meter: CostMeter) -> CostUpdated:
    spent = meter.total_usd()
    images = int(store.scalar("SELECT COUNT(*) FROM images") or 0)
    done = runner.done_units - runner.failed_units
    per_kept = spent / runner.kept_pairs if runner.kept_pairs else None
    # The projection is for the whole source, whatever --limit this run has.
    projected = spent / done * images * len(config.generation.tasks) if done else None
    return CostUpdated(round(spent, 6), round(per_kept, 6) if per_kept is not None else None,
                       round(projected, 4) if projected is not None else None)


def _check_budget(runner: _Runner, config: Config, meter: CostMeter) -> None:
    limit = config.budget.max_usd
    if limit and not runner.budget_hit and meter.total_usd() >= limit:
        runner.budget_hit = True
        runner.cancel.set()


__all__ = ["run", "RunSummary", "BudgetExceeded", "ensure_indexed"]
