"""Evaluation: ours against the baseline per task type, and the compared samples, each openable
in review."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Header, Label, Select, Static
from textual.worker import Worker, WorkerState

from visinstruct.core.analysis.agreement import JudgeAgreement, stored_judge_agreement
from visinstruct.core.evaluation.view import (
    EvaluationOverview,
    EvaluationSet,
    evaluation_overview,
    evaluation_sets,
)
from visinstruct.tui.widgets.eval_tables import (
    SAMPLE_ORDERS,
    EvaluatedSamplesTable,
    SummaryTable,
    ordered,
)
from visinstruct.tui.widgets.footer import Footer
from visinstruct.tui.widgets.formatting import counted
from visinstruct.tui.widgets.review_workers import ScreenReads, report_failure

if TYPE_CHECKING:
    from visinstruct.tui.app import VisinstructApp

NO_AGREEMENT = ("no blind review decisions yet: in review press B, accept or reject pairs "
                "without seeing their scores, and the judge's agreement with you shows here")


def _ci(value: float | None, interval: tuple[float, float] | None) -> str:
    if value is None:
        return "–"
    if interval is None:
        return f"{value:.2f}"
    return f"{value:.2f} [{interval[0]:.2f}, {interval[1]:.2f}]"


def agreement_text(agreement: JudgeAgreement) -> str:
    """The judge against blind human decisions, in two lines."""
    if agreement.n == 0:
        return NO_AGREEMENT
    best = "–" if agreement.best_threshold is None else f"{agreement.best_threshold:g}"
    decisions = counted(agreement.n, "blind decision")
    return (f"kappa {_ci(agreement.kappa, agreement.kappa_ci)} · Spearman "
            f"{_ci(agreement.spearman, agreement.spearman_ci)} · n {decisions}\n"
            f"precision {_ci(agreement.precision, agreement.precision_ci)} (n {agreement.kept}"
            f" kept) · recall {_ci(agreement.recall, agreement.recall_ci)} (n "
            f"{agreement.accepted} accepted) · at threshold "
            f"{agreement.threshold:g}; best agreement at {best} · [95% bootstrap intervals]")


EXPLAINED = ("relative = 100 × our mean score / the baseline's, over items compared in both "
             "orders; pos. bias = points the first-shown answer gains")


class EvaluationScreen(Screen[None]):
    """Reads the stored verdicts in a thread worker; enter or o opens a sample in review."""

    TITLE = "Evaluation"
    AUTO_FOCUS = "#eval-samples"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("o", "open_sample", "Open in review"),
        Binding("enter", "open_sample", "Open in review", show=False),
        Binding("s", "sort", "Sort"),
        Binding("g", "refresh", "Reload"),
    ]
    DEFAULT_CSS = """
    EvaluationScreen #eval-controls {
        height: 1;
        padding: 0 1;
    }
    EvaluationScreen #eval-controls Label {
        margin-right: 1;
    }
    EvaluationScreen #eval-set {
        width: 1fr;
    }
    EvaluationScreen .eval-heading {
        text-style: bold;
        color: $text-accent;
        padding: 0 1;
    }
    EvaluationScreen #eval-explained, EvaluationScreen #eval-status,
    EvaluationScreen #eval-agreement {
        color: $text-muted;
        padding: 0 1;
        height: auto;
    }
    """

    def __init__(self) -> None:
        super().__init__(id="evaluation")
        self.overview: EvaluationOverview | None = None
        self.sets: list[EvaluationSet] = []
        self.agreement: JudgeAgreement | None = None
        self.order = SAMPLE_ORDERS[0]
        self._token = 0
        self.reads = ScreenReads()

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="eval-controls"):
            yield Label("Verdicts:")
            yield Select([], prompt="latest", id="eval-set", compact=True, type_to_search=False)
        yield Static("Ours against the baseline", classes="eval-heading")
        yield SummaryTable(id="eval-summary")
        yield Static(EXPLAINED, id="eval-explained")
        yield Static("Judge against a human (blind review)", classes="eval-heading")
        yield Static("", id="eval-agreement")
        yield Static("Samples (enter: open in review · s: sort)", classes="eval-heading",
                     id="eval-samples-heading")
        yield EvaluatedSamplesTable(id="eval-samples")
        yield Static("loading…", id="eval-status")
        yield Footer()

    def on_mount(self) -> None:
        self.action_refresh()

    async def on_unmount(self) -> None:
        await self.reads.stop()

    def on_screen_resume(self) -> None:
        if self.overview is not None:
            self.action_refresh()

    # -- reading ---------------------------------------------------------------------------------
    def _chosen(self) -> EvaluationSet | None:
        value = self.query_one("#eval-set", Select).value
        return next((s for s in self.sets if s.label == value), None)

    def action_refresh(self) -> None:
        self._token += 1
        self._load(self._token, self._chosen())

    @work(thread=True, group="eval-load", exit_on_error=False)
    def _load(self, token: int, chosen: EvaluationSet | None) -> None:
        app: Any = self.app
        with self.reads.track():
            try:
                sets = evaluation_sets(app.store)
                if chosen is not None and chosen not in sets:
                    chosen = next((s for s in sets if s.label == chosen.label), None)
                overview = evaluation_overview(app.store, chosen or (sets[0] if sets else None),
                                               seed=app.ctx.config.evaluation.seed)
                agreement = stored_judge_agreement(app.store, app.ctx.config.judge.threshold)
            except Exception as error:  # noqa: BLE001 - shown as a dialog
                self.reads.fail(app, error)
                return
            self.reads.call(app, self._show, token, sets, overview, agreement)

    def _show(self, token: int, sets: list[EvaluationSet], overview: EvaluationOverview,
              agreement: JudgeAgreement) -> None:
        if token != self._token:
            return
        self.sets = sets
        self.overview = overview
        self.agreement = agreement
        self.query_one("#eval-agreement", Static).update(Text(agreement_text(agreement)))
        select = self.query_one("#eval-set", Select)
        labels = [(s.label, s.label) for s in sets]
        with self.prevent(Select.Changed):
            select.set_options(labels)
            if overview.chosen is not None:
                select.value = overview.chosen.label
        self.query_one(SummaryTable).show(overview.by_task, overview.overall)
        self._show_samples()
        status = self.query_one("#eval-status", Static)
        if overview.chosen is None:
            status.update("No evaluations yet: run `visinstruct evaluate` to compare with the "
                          "baseline.")
        else:
            status.update(f"{len(overview.samples)} samples compared · {overview.chosen.label}")

    def _show_samples(self) -> None:
        if self.overview is None:
            return
        table = self.query_one(EvaluatedSamplesTable)
        table.show(ordered(self.overview.samples, self.order))
        self.query_one("#eval-samples-heading", Static).update(
            f"Samples by {self.order} (enter: open in review · s: sort)")

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        shown = self.overview.chosen if self.overview is not None else None
        if shown is None or event.value != shown.label:
            self.action_refresh()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # The workers catch their own errors; this only guards against one that slipped through.
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            report_failure(self.app, event.worker.error)

    # -- actions ---------------------------------------------------------------------------------
    def action_sort(self) -> None:
        self.order = SAMPLE_ORDERS[(SAMPLE_ORDERS.index(self.order) + 1) % len(SAMPLE_ORDERS)]
        self._show_samples()

    async def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if isinstance(event.data_table, EvaluatedSamplesTable):
            event.stop()
            await self.action_open_sample()

    async def action_open_sample(self) -> None:
        sample = self.query_one(EvaluatedSamplesTable).current
        if sample is None:
            self.notify("No sample to open.", severity="warning")
            return
        await cast("VisinstructApp", self.app).open_review(sample.image_id, sample.task)
