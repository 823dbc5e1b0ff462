"""The run monitor (the home screen): progress, endpoints, lanes, scores, errors and samples."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Header

from visinstruct.tui.messages import RunStateChanged, SampleChosen
from visinstruct.tui.ownership import writer_name
from visinstruct.tui.widgets.endpoint_table import EndpointTable
from visinstruct.tui.widgets.error_feed import ErrorFeed
from visinstruct.tui.widgets.footer import Footer
from visinstruct.tui.widgets.lanes import WorkerLanes
from visinstruct.tui.widgets.latest_samples import LatestSamples
from visinstruct.tui.widgets.progress_panel import ProgressPanel
from visinstruct.tui.widgets.score_histogram import ScoreHistogram

if TYPE_CHECKING:
    from visinstruct.tui.app import VisinstructApp

# Redraw at most this often: events arrive far faster than eyes can read.
MIN_REDRAW_SECONDS = 0.2
SAMPLES_SECONDS = 1.0


def section(widget_id: str, title: str) -> Vertical:
    """A titled box around one part of the monitor."""
    box = Vertical(id=f"{widget_id}-box", classes="section")
    box.border_title = title
    return box


class MonitorScreen(Screen[None]):
    """Shows the app's RunState; s starts a run, space pauses or resumes it, x stops it."""

    TITLE = "Run monitor"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]
    BINDINGS = [
        Binding("s", "app.start_run", "Start",
                tooltip="Start or resume a run (shows what will run and asks first)"),
        Binding("space", "app.pause_run", "Pause",
                tooltip="Pause the run (calls in flight finish) or resume it"),
        Binding("x", "app.stop_run", "Stop",
                tooltip="Stop the run: no new work; resume later with s"),
        Binding("enter", "open_sample", "Open sample", show=False,
                tooltip="Open the selected sample in review"),
    ]

    def __init__(self) -> None:
        super().__init__(id="monitor")
        self._redraw_timer: Timer | None = None
        self._clock_timer: Timer | None = None
        self._samples_drawn = float("-inf")
        self._last_redraw = float("-inf")
        self._drawn_version = -1

    @property
    def visinstruct(self) -> VisinstructApp:
        return cast("VisinstructApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="monitor-body"):
            with section("progress", "Progress"):
                yield ProgressPanel(id="progress")
            with Horizontal(id="row-top", classes="monitor-row"):
                with section("endpoints", "Endpoints"):
                    yield EndpointTable(id="endpoints")
                with section("histogram", "Judge scores"):
                    yield ScoreHistogram(id="histogram")
            with Horizontal(id="row-middle", classes="monitor-row"):
                with section("lanes", "Worker lanes"):
                    yield WorkerLanes(id="lanes")
                with section("errors", "Recent errors"):
                    yield ErrorFeed(id="errors")
            with section("samples", "Latest samples (enter: review)"):
                yield LatestSamples(id="samples")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.redraw()

    def on_screen_resume(self) -> None:
        self.redraw()

    def on_run_state_changed(self, message: RunStateChanged) -> None:
        if not self.is_current:
            return  # redrawn on resume; a hidden screen need not keep up
        wait = MIN_REDRAW_SECONDS - (time.monotonic() - self._last_redraw)
        if wait <= 0:
            self.redraw()
        elif self._redraw_timer is None:
            self._redraw_timer = self.set_timer(wait, self._timed_redraw)

    def _timed_redraw(self) -> None:
        self._redraw_timer = None
        self.redraw()

    def redraw(self) -> None:
        """Show the app's RunState in every part of the screen."""
        app = self.visinstruct
        state = app.state
        now = app.clock()
        now_real = self._last_redraw = time.monotonic()
        self._drawn_version = state.version
        writer = writer_name(app.ownership.writer_pid) if app.attached else None
        self.query_one(ProgressPanel).show(state, now, writer)
        self.query_one(EndpointTable).show(state, now)
        self.query_one(ScoreHistogram).show(state)
        self.query_one(WorkerLanes).show(state, now)
        self.query_one(ErrorFeed).show(state)
        # The samples table is interactive (a DataTable): once a second is plenty for it.
        if not state.active or now_real - self._samples_drawn >= SAMPLES_SECONDS:
            self._samples_drawn = now_real
            self.query_one(LatestSamples).show(state)
        self._keep_clock(state.active and self.is_current)

    def _keep_clock(self, ticking: bool) -> None:
        """While a run goes, redraw each second so elapsed times move even when no event comes."""
        if ticking and self._clock_timer is None:
            self._clock_timer = self.set_interval(1.0, self.redraw)
        elif not ticking and self._clock_timer is not None:
            self._clock_timer.stop()
            self._clock_timer = None

    def on_screen_suspend(self) -> None:
        self._keep_clock(False)

    @property
    def drawn_version(self) -> int:
        """The RunState version on screen now (tests and the benchmark wait on it)."""
        return self._drawn_version

    def on_sample_chosen(self, message: SampleChosen) -> None:
        message.stop()
        self.run_worker(self.visinstruct.open_review(message.image_id, message.task),
                        exit_on_error=False)

    def action_open_sample(self) -> None:
        samples = self.query_one(LatestSamples)
        if samples.row_count:
            samples.action_select_cursor()
