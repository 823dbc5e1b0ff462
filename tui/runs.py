"""Runs seen from the app: start, pause and stop one in a thread worker, follow a store, and
move pipeline events and store reads into the RunState that every screen draws from."""

from __future__ import annotations

import threading
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.timer import Timer
from textual.worker import Worker, WorkerState

from visinstruct.core.store.snapshots import (
    StoreReader,
    StoreSnapshot,
    first_questions,
    last_judgement_id,
    score_counts,
    take_snapshot,
    threshold_of,
)
from visinstruct.tui.follow import StoreFollower
from visinstruct.tui.messages import EventBuffer, EventsArrived, RunStateChanged
from visinstruct.tui.ownership import writer_name
from visinstruct.tui.state import RunState
from visinstruct.tui.widgets.formatting import counted

if TYPE_CHECKING:
    from visinstruct.tui.app import VisinstructApp

DRAIN_SECONDS = 0.05
WORKER_GROUPS = ("run", "follow", "load", "questions")


class RunControl:
    """The app's one run (or the store it follows) and the RunState that mirrors it."""

    def __init__(self, app: VisinstructApp) -> None:
        self.app = app
        ctx = app.ctx
        self.state = RunState(ctx.config.judge.threshold)
        self.state.instances = {name: m.instances for name, m in ctx.config.models.items()}
        self.buffer = EventBuffer(wake=lambda: app.post_message(EventsArrived()))
        self.drain_timer: Timer | None = None
        self._generation = 0           # store reads made for an older generation are dropped
        self._cancel = threading.Event()
        self._pause = threading.Event()
        self._run_worker: Worker[Any] | None = None
        self._follow_stop = threading.Event()
        self._follow_worker: Worker[None] | None = None
        self._writer_watch: Timer | None = None
        self._header_run: int | None = None
        self._question_lookup: Worker[dict[int, str]] | None = None
        self._questions_asked: set[int] = set()
        self.closing = False
        self._pipeline_going = threading.Event()
        self.run_config: Any = app.ctx.config   # what the run going (or the last one) runs with

    @property
    def active(self) -> bool:
        """A run started in this app is going (including pausing and stopping)."""
        # The thread, not the worker: a worker cancelled at exit is "finished" while its
        # pipeline thread still waits on calls in flight and still writes.
        return self._pipeline_going.is_set() or (
            self._run_worker is not None and not self._run_worker.is_finished)

    @property
    def following(self) -> bool:
        """The store is being followed (another process writes it)."""
        return self._follow_worker is not None and not self._follow_worker.is_finished

    @property
    def run_worker(self) -> Worker[Any] | None:
        return self._run_worker

    # -- the app's life ----------------------------------------------------------------------------
    def begin(self, *, frozen: bool, autostart: bool) -> None:
        """What the monitor shows first: a frozen read, a new run, the followed store, or the
        store."""
        if frozen:
            self.state.apply_snapshot(take_snapshot(self.app.store, self.app.ctx.config),
                                      self.app.clock(), follow=True)
            self.broadcast()
        elif autostart:
            self.start()
        elif self.app.attached:
            self.start_following()
        else:
            self._load_store()

    def end(self) -> None:
        """The app is closing: stop following, stop the run, close the store when no one writes."""
        self.closing = True
        self._stop_watching()
        self._follow_stop.set()
        self._cancel.set()
        self._pause.clear()
        if not self.active:
            self.app.store.close()
        # else: the run worker closes the store once its last write has committed

    # -- runs --------------------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        """A run of ours was told to stop and is waiting for its calls in flight."""
        return self.active and self._cancel.is_set()

    def start(self, config: Any = None) -> None:
        """Start (or resume) a run of `config` (default ctx.config) on the store in a thread
        worker."""
        app = self.app
        if self.active:
            app.notify("A run is already going.", severity="warning")
            return
        if app.store.readonly:
            app.notify(f"{app.ctx.db_path} is read-only: it can be browsed but not run.",
                       severity="error")
            return
        self.run_config = config if config is not None else app.ctx.config
        self.stop_following()
        self._generation += 1
        self._cancel.clear()
        self._pause.clear()
        self.state.run_requested()
        self._pipeline_going.set()
        self._run_worker = app.run_worker(
            partial(self._run_pipeline, self._generation), thread=True, group="run",
            name="pipeline", exit_on_error=False)
        app.notify(f"Run started on {app.ctx.db_path.name}.")

    def _run_pipeline(self, generation: int) -> Any:
        """Runs in the worker thread: the pipeline, with the scores already stored counted aside."""
        from visinstruct.core import pipeline

        app = self.app
        try:
            # Judgements up to now are counted in another thread; the run's own arrive as events.
            upto = last_judgement_id(app.store)
            app.call_from_thread(self._count_stored_scores, upto, generation)
            return pipeline.run(self.run_config, app.store, self.buffer.emit, self._cancel,
                                self._pause)
        finally:
            self._pipeline_going.clear()
            if self.closing:
                app.store.close()

    def _count_stored_scores(self, upto: int, generation: int) -> None:
        app = self.app

        def count() -> None:
            threshold = threshold_of(app.store, app.ctx.config.judge.threshold)
            self.buffer.offer_snapshot(score_counts(app.store, threshold, 0, upto), generation)

        app.run_worker(count, thread=True, group="load", name="stored-scores", exit_on_error=False)

    def _no_run(self) -> None:
        if self.following and self.state.active:
            self.app.notify("This run belongs to another process: steer it there "
                            "(Ctrl-C stops it cleanly).", severity="warning")
        else:
            self.app.notify("No run is going.", severity="warning")

    def pause(self) -> None:
        """Pause a running run (calls in flight finish) or resume a paused one."""
        if not self.active or self._cancel.is_set():
            self._no_run()
            return
        if self._pause.is_set():
            self._pause.clear()
            self.state.set_status("running")
            self.app.notify("Run resumed.")
        else:
            self._pause.set()
            self.state.set_status("paused")
            self.app.notify("Paused: calls in flight finish, no new work starts.")
        self.broadcast()

    def stop(self) -> None:
        """Stop taking new work; calls in flight finish and the rest is done on the next run."""
        if not self.active:
            self._no_run()
            return
        self._cancel.set()
        self._pause.clear()
        self.state.set_status("stopping")
        self.app.notify("Stopping: calls in flight finish; the rest waits for the next run.")
        self.broadcast()

    # -- reading the store -------------------------------------------------------------------------
    def _load_store(self) -> None:
        """One read of the store, so the monitor shows what it holds before any run."""
        generation = self._generation
        app = self.app

        def load() -> None:
            # First without the cost (the one read that grows with the store), then with it.
            reader = StoreReader(app.store, app.ctx.config)
            self.buffer.offer_snapshot(reader.snapshot(with_cost=False), generation)
            self.buffer.offer_snapshot(reader.snapshot(with_cost=True), generation)

        app.run_worker(load, thread=True, group="load", name="load-store", exit_on_error=False)

    def start_following(self) -> None:
        """Poll the store in a thread worker while another process writes it; take the store
        over once that process lets the writer lock go."""
        app = self.app
        if self._writer_watch is None:
            self._writer_watch = app.set_interval(max(0.2, app.ctx.poll_seconds),
                                                  self._watch_writer)
        self._generation += 1
        self.state.source = "store"
        self._follow_stop = threading.Event()
        generation = self._generation
        follower = StoreFollower(app.store, app.ctx.config, app.ctx.poll_seconds,
                                 lambda snapshot: self.buffer.offer_snapshot(snapshot, generation))
        self._follow_worker = app.run_worker(partial(follower.follow, self._follow_stop),
                                             thread=True, group="follow", name="follow-store",
                                             exit_on_error=False)

    def stop_following(self) -> None:
        self._follow_stop.set()
        self._follow_worker = None

    def _stop_watching(self) -> None:
        if self._writer_watch is not None:
            self._writer_watch.stop()
            self._writer_watch = None

    def _watch_writer(self) -> None:
        """While following: once the other writer is gone, this app owns the store."""
        app = self.app
        before = app.ownership.writer_pid
        if app.ownership.writer_still_there():
            if app.ownership.writer_pid != before:
                app.show_owner()
            return
        if not app.ownership.claim():
            app.show_owner()  # yet another process took it: follow that one
            return
        self._stop_watching()
        self.stop_following()
        self._load_store()   # its last writes, then the store as it stands
        app.show_owner()
        self.broadcast()     # the screens drop "written by" now, not at the next read
        app.notify(f"{writer_name(before)} has stopped writing {app.ctx.db_path.name}: this "
                   "window owns it now (s starts or resumes the run).")

    # -- events to the screens ---------------------------------------------------------------------
    def events_arrived(self) -> None:
        """Drain a moment later, so one drain takes a whole burst."""
        if self.drain_timer is None:
            self.drain_timer = self.app.set_timer(DRAIN_SECONDS, self.drain)

    def drain(self) -> None:
        """Move buffered events and store reads into the RunState; tell the screens once."""
        self.drain_timer = None
        self.buffer.disarm()
        state = self.state
        before = state.version
        now = self.app.clock()
        for generation, snapshot in self.buffer.drain_snapshots():
            if generation != self._generation:
                continue
            if isinstance(snapshot, StoreSnapshot):
                state.apply_snapshot(snapshot, now, follow=state.source == "store")
                if state.source == "store" and not self.app.attached:
                    state.writer_gone()
            else:
                state.apply_scores(snapshot, full=True)
        state.apply_events(self.buffer.drain_events(), now)
        if len(self.buffer):  # more than one drain takes: the rest goes next time
            self.drain_timer = self.app.set_timer(DRAIN_SECONDS, self.drain)
        if state.version != before:
            self._look_up_questions()
            self.broadcast()

    def broadcast(self) -> None:
        """Tell every screen of every mode that the RunState changed (coalesced per screen)."""
        if self.app.attached and self.state.run_id != self._header_run:
            self._header_run = self.state.run_id
            self.app.show_owner()
        for mode in self.app.MODES:
            try:
                stack = self.app.get_screen_stack(mode)
            except KeyError:
                continue  # a mode not opened yet
            for screen in stack:
                screen.post_message(RunStateChanged(self.state))

    def _look_up_questions(self) -> None:
        """Fetch the first question of samples that arrived as events without one."""
        if self._question_lookup and not self._question_lookup.is_finished:
            return
        missing = [s.generation_id for s in self.state.samples
                   if not s.question and s.generation_id not in self._questions_asked]
        if not missing:
            return
        self._questions_asked.update(missing)
        self._question_lookup = self.app.run_worker(
            partial(first_questions, self.app.store, missing), thread=True, group="questions",
            name="first-questions", exit_on_error=False)

    # -- workers -----------------------------------------------------------------------------------
    def worker_changed(self, event: Worker.StateChanged) -> bool:
        """Handle the state change of one of our workers; False when the worker is not ours."""
        worker = event.worker
        if worker.group not in WORKER_GROUPS:
            return False
        if event.state == WorkerState.ERROR:
            self._failed(worker)
        elif event.state == WorkerState.SUCCESS:
            if worker is self._question_lookup and isinstance(worker.result, dict):
                self.state.fill_questions(worker.result)
                self.broadcast()
                self._look_up_questions()  # samples that arrived while this lookup ran
            elif worker is self._run_worker:
                self._run_ended(worker.result)
        return True

    def _failed(self, worker: Worker[Any]) -> None:
        if self.closing:
            return
        if worker is self._run_worker:
            self.state.set_status("failed")
            self.broadcast()
        self.app.report_error(worker.error)

    def _run_ended(self, summary: Any) -> None:
        status = getattr(summary, "status", "finished")
        done, total = getattr(summary, "done_units", 0), getattr(summary, "total_units", 0)
        failed = getattr(summary, "failed_units", 0)
        this_run = counted(max(0, done - self.state.start_done), "unit")
        text = f"Run {status}: {this_run} this run, {done:,}/{total:,} done"
        self.app.notify(text + (f", {failed:,} failed." if failed else "."),
                        severity="warning" if failed or status != "finished" else "information")
