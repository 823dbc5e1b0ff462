"""The one tally of a run: folds pipeline events into the figures every progress view shows.

The headless Rich progress and the app's RunState both read a RunTally, so units, pairs,
calls, rates and the ETA are counted and worded the same way everywhere.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

from visinstruct.core.events import (
    CallFinished,
    CostUpdated,
    Event,
    ImageDone,
    PairsJudged,
    RunFinished,
    RunStarted,
)

# Seconds of history behind the rates while a run goes.
RATE_WINDOW = 30.0
ACTIVE = ("running", "paused", "stopping", "starting")


@dataclass(frozen=True)
class RunFigures:
    """A run's figures at one moment; rates are per second, durations in seconds."""

    run_id: int | None
    status: str
    total_units: int
    done_units: int
    failed_units: int
    start_done: int
    judged_pairs: int        # pairs of this run with a readable score
    unjudged_pairs: int      # pairs of this run the judge gave no readable score
    kept_pairs: int          # pairs of this run at or above the threshold
    calls: int
    failed_calls: int
    errors: tuple[tuple[str, int], ...]
    cost_usd: float
    projected_cost_usd: float | None
    cost_per_kept_pair_usd: float | None
    elapsed_s: float | None
    units_per_s: float | None
    calls_per_s: float | None
    eta_s: float | None
    pictures_sent: int = 0   # pictures carried by this run's answered calls

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def remaining_units(self) -> int:
        return max(0, self.total_units - self.done_units)


class RunTally:
    """Folds events (or a store read of the run row) into RunFigures; not thread-safe by itself."""

    def __init__(self) -> None:
        self.run_id: int | None = None
        self.status = "none"
        self.total_units = 0
        self.done_units = 0
        self.failed_units = 0
        self.start_done = 0
        self.judged_pairs = 0
        self.unjudged_pairs = 0
        self.kept_pairs = 0
        self.calls = 0
        self.failed_calls = 0
        self.pictures_sent = 0
        self.errors: Counter[str] = Counter()
        self.cost_usd = 0.0
        self.projected_cost_usd: float | None = None
        self.cost_per_kept_pair_usd: float | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._unit_marks: deque[tuple[float, int]] = deque()
        self._call_marks: deque[tuple[float, int]] = deque()

    # -- folding ---------------------------------------------------------------------------------
    def add(self, event: Event, now: float) -> None:
        """Take one event that arrived at wall-clock `now`."""
        if isinstance(event, RunStarted):
            self._started(event, now)
        elif isinstance(event, ImageDone):
            self.done_units = max(self.done_units, event.done_units)
            self.total_units = event.total_units or self.total_units
            self.failed_units += 0 if event.ok else 1
            self._mark(self._unit_marks, now, self.done_units)
        elif isinstance(event, PairsJudged):
            unreadable = sum(1 for score in event.scores if score is None)
            self.unjudged_pairs += unreadable
            self.judged_pairs += len(event.scores) - unreadable
            self.kept_pairs += event.kept
        elif isinstance(event, CallFinished):
            self.calls += 1
            if event.status != "ok":
                self.failed_calls += 1
                self.errors[event.error_kind or "error"] += 1
            else:
                self.pictures_sent += event.pictures
            self._mark(self._call_marks, now, self.calls)
        elif isinstance(event, CostUpdated):
            self.cost_usd = event.cost_usd
            self.projected_cost_usd = event.projected_cost_usd
            self.cost_per_kept_pair_usd = event.cost_per_kept_pair_usd
        elif isinstance(event, RunFinished):
            self._finished(event, now)

    def _started(self, event: RunStarted, now: float) -> None:
        self.run_id = event.run_id
        if self.status not in ACTIVE or self.status in ("starting", "none"):
            self.status = "running"
        self.total_units = event.total_units
        self.done_units = self.start_done = event.done_units
        self.failed_units = self.judged_pairs = self.unjudged_pairs = self.kept_pairs = 0
        self.calls = self.failed_calls = self.pictures_sent = 0
        self.errors.clear()
        self.started_at, self.finished_at = now, None
        self._unit_marks.clear()
        self._call_marks.clear()
        self._mark(self._unit_marks, now, self.done_units)
        self._mark(self._call_marks, now, 0)

    def _finished(self, event: RunFinished, now: float) -> None:
        # The run's own closing figures win: the last frame then says what the summary says.
        self.run_id = event.run_id
        self.status = event.status
        self.done_units, self.total_units = event.done_units, event.total_units
        self.failed_units = event.failed_units
        self.cost_usd = event.cost_usd
        self.finished_at = now
        self.started_at = now - event.elapsed_s

    def set_status(self, status: str) -> None:
        self.status = status

    def restore(self, run_id: int | None, status: str, total_units: int, done_units: int,
                failed_units: int, started_at: float | None, finished_at: float | None,
                now: float, *, start_done: int | None = None,
                pictures_sent: int | None = None) -> None:
        """Take the run row as a store read shows it (following another process).

        `start_done` is the units the run found done when it started: with it, the rate counts
        the run's own units from the run's own start, not from when this read first saw it.
        """
        if run_id != self.run_id:
            self._unit_marks.clear()
            self._call_marks.clear()
            if start_done is not None:
                self.start_done = min(start_done, done_units)
                if status == "running" and started_at is not None:
                    self._unit_marks.append((started_at, self.start_done))
            else:  # not recorded (a run from an older version): count from this first read
                self.start_done = done_units if status == "running" else 0
        self.run_id, self.status = run_id, status
        self.total_units, self.done_units, self.failed_units = total_units, done_units, failed_units
        self.started_at, self.finished_at = started_at, finished_at
        if pictures_sent is not None:
            self.pictures_sent = pictures_sent
        if status == "running":
            self._mark(self._unit_marks, now, done_units)

    @staticmethod
    def _mark(marks: deque[tuple[float, int]], now: float, value: int) -> None:
        if len(marks) > 1 and marks[-1][1] == value:
            marks[-1] = (now, value)
        else:
            marks.append((now, value))
        while len(marks) > 2 and now - marks[0][0] > RATE_WINDOW:
            marks.popleft()

    # -- reading ---------------------------------------------------------------------------------
    def elapsed(self, now: float) -> float | None:
        if self.started_at is None:
            return None
        return max(0.0, (self.finished_at or now) - self.started_at)

    def _rate(self, marks: deque[tuple[float, int]], done: int, now: float) -> float | None:
        """Per second: over the recent window while running, the run's average once ended."""
        if self.status not in ACTIVE:
            elapsed = self.elapsed(now)
            return done / elapsed if elapsed and done > 0 else None
        if len(marks) < 2 or marks[-1][0] <= marks[0][0]:
            return None
        return max(0.0, (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0]))

    def figures(self, now: float) -> RunFigures:
        """The figures at wall-clock `now`."""
        units_per_s = self._rate(self._unit_marks, self.done_units - self.start_done, now)
        calls_per_s = self._rate(self._call_marks, self.calls, now)
        remaining = max(0, self.total_units - self.done_units)
        if not remaining and self.total_units:
            eta: float | None = 0.0
        elif self.status in ACTIVE and units_per_s:
            eta = remaining / units_per_s
        else:
            eta = None
        return RunFigures(
            self.run_id, self.status, self.total_units, self.done_units, self.failed_units,
            self.start_done, self.judged_pairs, self.unjudged_pairs, self.kept_pairs,
            self.calls, self.failed_calls, tuple(sorted(self.errors.items())), self.cost_usd,
            self.projected_cost_usd, self.cost_per_kept_pair_usd, self.elapsed(now),
            units_per_s, calls_per_s, eta, self.pictures_sent)


# -- one way to write each figure, for the CLI and the app alike --------------------------------
def duration(seconds: float | None) -> str:
    """'4.2s', '45s', '3m 05s', '2h 10m'; '–' when unknown."""
    if seconds is None:
        return "–"
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def per_second(value: float | None, unit: str) -> str:
    """'12.5 units/s', '1,204 calls/s'; '–' when unknown. The unit is always named."""
    if value is None:
        return f"– {unit}/s"
    if value >= 100:
        return f"{value:,.0f} {unit}/s"
    return f"{value:.1f} {unit}/s"


def money(value: float | None) -> str:
    if value is None:
        return "–"
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "–"


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """'1 pair', '2 pairs', '1,200 blind decisions': `noun` is the singular."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def units_text(figures: RunFigures) -> str:
    """'70/72 units · 2 failed · 12.5 units/s · ETA 3.0s' (the ETA only while a run goes)."""
    text = f"{figures.done_units:,}/{figures.total_units:,} units"
    if figures.failed_units:
        text += f" · {figures.failed_units:,} failed"
    text += f" · {per_second(figures.units_per_s, 'units')}"
    if figures.active:
        text += f" · ETA {duration(figures.eta_s)}"
    return text


def run_pairs_text(figures: RunFigures) -> str:
    """'this run: 30 pairs judged · 12 kept (40%) · 1 unjudged'."""
    text = (f"this run: {counted(figures.judged_pairs, 'pair')} judged · "
            f"{figures.kept_pairs:,} kept "
            f"({percent(figures.kept_pairs, figures.judged_pairs)})")
    if figures.unjudged_pairs:
        text += f" · {figures.unjudged_pairs:,} unjudged"
    return text


def calls_text(figures: RunFigures) -> str:
    """'120 calls (2 failed) · 3.1 calls/s', and '· 80 pictures sent' when models saw."""
    failed = f" ({figures.failed_calls:,} failed)" if figures.failed_calls else ""
    pictures = (f" · {counted(figures.pictures_sent, 'picture')} sent"
                if figures.pictures_sent else "")
    return (f"{counted(figures.calls, 'call')}{failed} · "
            f"{per_second(figures.calls_per_s, 'calls')}{pictures}")


def progress_line(figures: RunFigures) -> str:
    """One plain line for a log: 'progress: 12/40 units (28 left) · 130 calls (2 failed) · ...'.

    What `run --headless` prints at a steady interval when stderr is not a terminal. A
    resumed run counts this run's units against what was left: '4 left of 6 units'.
    """
    remaining = figures.remaining_units
    if figures.start_done:
        this_run = max(0, figures.done_units - figures.start_done)
        units = (f"{remaining:,} left of {figures.total_units:,} units "
                 f"({this_run:,} done this run)")
    else:
        units = f"{figures.done_units:,}/{figures.total_units:,} units ({remaining:,} left)"
    if figures.failed_units:
        units += f", {figures.failed_units:,} failed"
    failed = f" ({figures.failed_calls:,} failed)" if figures.failed_calls else ""
    errors = ", ".join(f"{kind} {count:,}" for kind, count in figures.errors) or "none"
    return (f"progress: {units} · {counted(figures.calls, 'call')}{failed} · "
            f"{figures.kept_pairs:,} kept · errors: {errors} · "
            f"elapsed {duration(figures.elapsed_s)} · ETA {duration(figures.eta_s)}")
