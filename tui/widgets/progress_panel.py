"""The run's overall progress: status, a bar, rate and ETA, pairs kept, and cost."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, ProgressBar

from visinstruct.core.pipeline.tally import per_second
from visinstruct.tui.state import RunState
from visinstruct.tui.widgets.formatting import counted, duration, money, percent

STATUS_STYLE = {
    "running": "bold green", "starting": "bold green", "paused": "bold yellow",
    "stopping": "bold yellow", "finished": "bold cyan", "interrupted": "bold yellow",
    "budget": "bold yellow", "failed": "bold red", "none": "dim",
}
STATUS_TEXT = {"none": "no run yet", "budget": "stopped at the budget"}


def status_line(state: RunState, now: float, writer: str | None) -> Text:
    """'Run 3 · running · written by pid 4711 · 4m 10s' (`writer`: the live process writing the
    store when it is not this app)."""
    line = Text()
    if state.run_id is not None:
        line.append(f"Run {state.run_id}", style="bold")
        line.append(" · ")
    line.append(STATUS_TEXT.get(state.status, state.status),
                style=STATUS_STYLE.get(state.status, ""))
    if writer is not None:
        line.append(f" · written by {writer}", style="italic")
    elapsed = state.elapsed(now)
    if elapsed is not None:
        line.append(f" · {duration(elapsed)}")
    if state.message and state.status not in ("running", "starting"):
        line.append(f" · {state.message}", style="dim")
    return line


def units_line(state: RunState, now: float) -> Text:
    """'70/72 units · 2 failed · 12.5 units/s · ETA 3.0s', the headless progress's figures.

    A resumed run going says what is left of what ('4 left of 6 units'), and once ended how
    many of the units were its own ('6/6 units (4 this run)'); paused, there is no ETA.
    """
    figures = state.figures(now)
    units = f"{figures.done_units:,}/{figures.total_units:,} units"
    if figures.start_done and figures.active:
        units = f"{figures.remaining_units:,} left of {figures.total_units:,} units"
    elif figures.start_done and figures.total_units and state.source == "live":
        # (a followed run's start is only where this window began to watch it)
        units += f" ({figures.done_units - figures.start_done:,} this run)"
    parts = [units]
    if figures.failed_units:
        parts.append(f"{figures.failed_units:,} failed")
    parts.append(per_second(figures.units_per_s, "units"))
    if figures.status == "paused":
        parts.append("ETA paused")
    elif figures.active:
        parts.append(f"ETA {duration(figures.eta_s)}")
    if figures.pictures_sent:  # only when models see: the line is unchanged otherwise
        parts.append(f"{counted(figures.pictures_sent, 'picture')} sent")
    text = " · ".join(parts)
    line = Text(text)
    if figures.failed_units:
        start = text.index(" · ") + 3
        line.stylize("red", start, start + len(f"{figures.failed_units:,} failed"))
    return line


def pairs_line(state: RunState) -> Text:
    """'store: 163 pairs judged · 81 kept (50%) · $1.20 so far · $9.80 projected' (fits 80
    columns up to tens of thousands of pairs)."""
    line = Text(f"store: {counted(state.judged_pairs, 'pair')} judged · ")
    line.append(f"{state.kept_pairs:,} kept ({percent(state.kept_pairs, state.judged_pairs)})",
                style="green")
    line.append(f" · {money(state.cost_usd)} so far · {money(state.projected_cost_usd)} projected")
    return line


class ProgressPanel(Vertical):
    """Three lines and a bar; `show(state, now)` redraws them."""

    def compose(self) -> ComposeResult:
        yield Label(id="run-status")
        yield ProgressBar(total=1, show_eta=False, id="run-bar")
        yield Label(id="run-units")
        yield Label(id="run-pairs")

    def show(self, state: RunState, now: float, writer: str | None) -> None:
        # One line each, always: no layout pass needed when they change.
        self.query_one("#run-status", Label).update(status_line(state, now, writer),
                                                    layout=False)
        bar = self.query_one("#run-bar", ProgressBar)
        # Never indeterminate: its animation would redraw forever with nothing to say.
        bar.update(total=max(1, state.total_units), progress=state.done_units)
        self.query_one("#run-units", Label).update(units_line(state, now), layout=False)
        self.query_one("#run-pairs", Label).update(pairs_line(state), layout=False)
