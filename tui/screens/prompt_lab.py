"""Prompt lab: edit a prompt, try it on a few images beside the saved version, save it for runs."""

from __future__ import annotations

import re
import threading
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Checkbox, Header, Input, Select, Static, TextArea
from textual.worker import Worker, WorkerState

from visinstruct.core.analysis.versions import VersionDiversity
from visinstruct.core.errors import InputError
from visinstruct.core.events import Event
from visinstruct.core.lab.diversity import TrialDiversity, lab_version_diversity, trial_diversity
from visinstruct.core.lab.trials import (
    LAB_TASKS,
    LabImageDone,
    LabResult,
    VersionStats,
    parse_lab_template,
    random_image_ids,
    run_lab,
    version_stats,
)
from visinstruct.core.store.interrupt import ReadCancelled
from visinstruct.core.text.prompt_versions import active_template, save_version
from visinstruct.core.text.prompts import PromptTemplate, prompt_version
from visinstruct.tui.widgets.footer import Footer
from visinstruct.tui.widgets.lab_results import DiversityTable, LabSamplesTable, VersionTable
from visinstruct.tui.widgets.review_workers import ScreenReads, report_failure

RANDOM_COUNT = 3
DIVERSITY_KEY = ("n answers · d-1/d-2 distinct-1/2 · sBLEU self-BLEU · near near-duplicate "
                 "share · zlib compression ratio · tpl share of the top-10 question templates; "
                 "higher sBLEU, near, zlib or tpl = more repetitive (README: Analysing the data)")


def parse_image_ids(text: str) -> list[int]:
    """Image ids typed as '1, 2 3'; InputError names the first one that is not a number."""
    ids = []
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        if not part.isdigit():
            raise InputError(f"image id {part!r} is not a number; type ids like 139, 285")
        ids.append(int(part))
    return ids


class PromptLabScreen(Screen[None]):
    """The lab: every store read, model call and save runs in a thread worker."""

    TITLE = "Prompt lab"
    AUTO_FOCUS = "#lab-prompt"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "run_trial", "Run/stop"),
        Binding("ctrl+s", "save", "Save version"),
        Binding("ctrl+n", "random_images", "Random images"),
    ]
    DEFAULT_CSS = """
    PromptLabScreen #lab-controls {
        height: 1;
    }
    PromptLabScreen #lab-controls > * {
        margin-right: 1;
    }
    PromptLabScreen #lab-controls Button {
        min-width: 8;
    }
    PromptLabScreen #lab-prompt {
        width: 21;
    }
    PromptLabScreen #lab-images {
        width: 1fr;
        min-width: 14;
    }
    PromptLabScreen #lab-body {
        height: 1fr;
    }
    PromptLabScreen #lab-editor {
        width: 1fr;  /* a third: the trial table needs the rest at 120 columns */
        height: 100%;
    }
    PromptLabScreen #lab-results {
        width: 2fr;
        height: 100%;
        padding-left: 1;
    }
    PromptLabScreen .lab-heading {
        text-style: bold;
        color: $text-accent;
    }
    PromptLabScreen #lab-diversity-key {
        color: $text-muted;
    }
    PromptLabScreen #lab-status {
        height: 1;
        color: $text-muted;
        padding: 0 1;
    }
    PromptLabScreen.-narrow #lab-body {
        layout: vertical;
    }
    PromptLabScreen.-narrow #lab-editor, PromptLabScreen.-narrow #lab-results {
        width: 100%;
        height: 1fr;
        padding-left: 0;
    }
    """

    def __init__(self) -> None:
        super().__init__(id="lab")
        self.saved: PromptTemplate | None = None
        self.result: LabResult | None = None
        self.stats: list[VersionStats] = []
        self.diversity: list[VersionDiversity] = []
        self.trial_diversity: TrialDiversity | None = None
        self._cancel: threading.Event | None = None
        self._loaded_name = ""
        self._requested = ""
        self._behind_dialog = False
        self._shows_edited = False  # the status line says "edited"
        self.reads = ScreenReads()

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="lab-controls"):
            yield Select([(name, name) for name in LAB_TASKS], value=LAB_TASKS[0],
                         allow_blank=False, id="lab-prompt", compact=True,
                         type_to_search=False)
            yield Input(placeholder="image ids, e.g. 139, 285", id="lab-images", compact=True)
            yield Button("Random", id="lab-random", compact=True,
                         tooltip=f"Pick {RANDOM_COUNT} random images")
            yield Checkbox("eval", id="lab-evaluate", compact=True,
                           tooltip="Also compare both versions with the baseline")
            yield Checkbox("picture", id="lab-picture", compact=True,
                           tooltip="Compare the task's vision prompt with the picture against "
                                   "its text prompt without, on the same images")
            yield Button("Run", id="lab-run", variant="primary", compact=True)
            yield Button("Save", id="lab-save", variant="success", compact=True)
        with Horizontal(id="lab-body"):
            yield TextArea("", id="lab-editor", soft_wrap=True, show_line_numbers=False)
            with VerticalScroll(id="lab-results"):
                yield Static("Trial", classes="lab-heading")
                yield LabSamplesTable(id="lab-samples")
                yield Static("Versions", classes="lab-heading")
                yield VersionTable(id="lab-versions")
                yield Static("Diversity: each version, then GPT-4 on the same images",
                             classes="lab-heading")
                yield DiversityTable(id="lab-diversity")
                yield Static(DIVERSITY_KEY, id="lab-diversity-key")
        yield Static("", id="lab-status")
        yield Footer()

    def on_mount(self) -> None:
        self._request(self.prompt_name)

    async def on_unmount(self) -> None:
        await self.reads.stop()  # a trial in progress stops too

    def on_screen_suspend(self) -> None:
        self._behind_dialog = isinstance(self.app.screen, ModalScreen)

    def on_screen_resume(self) -> None:
        # Back from another screen (not a dialog): a run may have moved the figures.
        if self.saved is not None and not self._behind_dialog:
            self._request(self.prompt_name)
        self._behind_dialog = False

    @property
    def prompt_name(self) -> str:
        return str(self.query_one("#lab-prompt", Select).value)

    @property
    def editor(self) -> TextArea:
        return self.query_one("#lab-editor", TextArea)

    def _status(self, text: str) -> None:
        self.query_one("#lab-status", Static).update(text)

    # -- loading ---------------------------------------------------------------------------------
    @work(thread=True, group="lab-load", exclusive=True, exit_on_error=False)
    def _load_prompt(self, name: str) -> None:
        app: Any = self.app
        with self.reads.track() as closing:
            try:
                saved = active_template(app.store, name)
                stats = version_stats(app.store, name, app.ctx.config.judge.threshold, closing)
                diversity = lab_version_diversity(app.store, name, closing)
            except ReadCancelled:
                return
            except Exception as error:  # noqa: BLE001 - shown as a dialog
                self.reads.fail(app, error)
                return
            self.reads.call(app, self._show_prompt, name, saved, stats, diversity)

    def _show_prompt(self, name: str, saved: PromptTemplate, stats: list[VersionStats],
                     diversity: list[VersionDiversity]) -> None:
        if name != self.prompt_name:
            return
        self.saved = saved
        self.stats = stats
        self.diversity = diversity
        if self._loaded_name != name:
            self._loaded_name = name
            self.result = None
            self.trial_diversity = None
            self.editor.load_text(saved.text)
            self.query_one(LabSamplesTable).clear()
        self._show_versions()
        self._status(f"{name}: the saved version {saved.version} is the one runs use. "
                     "Edit, pick images, run.")

    def _show_versions(self) -> None:
        trial = self.result.version if self.result is not None else self._edited_version()
        self.query_one(VersionTable).show(self.stats, trial, self.result)
        self.query_one(DiversityTable).show(self.diversity, self.stats, trial,
                                            self.trial_diversity)

    def _edited_version(self) -> str | None:
        text = self.editor.text
        version = prompt_version(text) if text.strip() else None
        return None if self.saved is not None and version == self.saved.version else version

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.select.id == "lab-prompt" and event.value != self._requested:
            self._request(str(event.value))

    def _request(self, name: str) -> None:
        self._requested = name
        self._load_prompt(name)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        if self.saved is None:
            return
        edited = self._edited_version()
        if edited is not None:
            self._shows_edited = True
            self._status(f"edited: this text is version {edited} (saved: {self.saved.version})")
        elif self._shows_edited:  # back to the saved text (by undo or typing): not edited now
            self._shows_edited = False
            self._status(f"{self.prompt_name}: unchanged, the saved version {self.saved.version} "
                         "is the one runs use.")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # The workers catch their own errors; this only guards against one that slipped through.
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            report_failure(self.app, event.worker.error)

    # -- buttons and keys ------------------------------------------------------------------------
    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        actions = {"lab-random": self.action_random_images, "lab-run": self.action_run_trial,
                   "lab-save": self.action_save}
        action = actions.get(event.button.id or "")
        if action is not None:
            action()

    def action_random_images(self) -> None:
        self._pick_random()

    @work(thread=True, group="lab-random", exit_on_error=False)
    def _pick_random(self) -> None:
        app: Any = self.app
        with self.reads.track():
            try:
                ids = random_image_ids(app.store, RANDOM_COUNT)
            except Exception as error:  # noqa: BLE001 - shown as a dialog
                self.reads.fail(app, error)
                return
            if not ids:
                self.reads.call(app, self.notify, "The store holds no images yet.")
                return
            self.reads.call(app, self._set_images, ids)

    def _set_images(self, ids: list[int]) -> None:
        self.query_one("#lab-images", Input).value = ", ".join(str(i) for i in ids)

    def _template(self) -> PromptTemplate | None:
        """The edited text as a template, or None after showing why it is not valid."""
        try:
            return parse_lab_template(self.editor.text, self.prompt_name)
        except Exception as error:  # noqa: BLE001 - ConfigError names the problem
            report_failure(self.app, error)
            return None

    def action_run_trial(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
            self._status("stopping: calls in flight finish…")
            return
        template = self._template()
        if template is None:
            return
        try:
            ids = parse_image_ids(self.query_one("#lab-images", Input).value)
        except InputError as error:
            report_failure(self.app, error)
            return
        if not ids:
            report_failure(self.app, InputError(
                "pick images for the trial: type ids or press Random"))
            return
        self._cancel = self.reads.event()
        self.query_one("#lab-run", Button).label = "Stop"
        evaluate = self.query_one("#lab-evaluate", Checkbox).value
        sides = self.query_one("#lab-picture", Checkbox).value
        what = "with and without the picture" if sides else template.version
        self._status(f"trying {what} on {len(ids)} image(s)…")
        self._run(template, ids, evaluate, self._cancel, sides)

    @work(thread=True, group="lab-run", exit_on_error=False)
    def _run(self, template: PromptTemplate, ids: list[int], evaluate: bool,
             cancel: threading.Event, picture_sides: bool = False) -> None:
        app: Any = self.app

        def emit(event: Event) -> None:
            if isinstance(event, LabImageDone):
                self.reads.call(app, self._status, f"trying {template.version}: "
                                                   f"{event.done}/{event.total} images done…")

        with self.reads.track() as closing:
            try:
                result = run_lab(app.ctx.config, app.store, template, ids, emit=emit,
                                 cancel=cancel, evaluate=evaluate,
                                 picture_sides=picture_sides)
                stats = version_stats(app.store, template.name, app.ctx.config.judge.threshold,
                                      closing)
                diversity = (lab_version_diversity(app.store, template.name, closing),
                             trial_diversity(app.store, result))
            except ReadCancelled:
                return
            except Exception as error:  # noqa: BLE001 - shown as a dialog
                self.reads.call(app, self._finished, None, None, None)
                self.reads.fail(app, error)
                return
            self.reads.call(app, self._finished, result, stats, diversity)

    def _finished(self, result: LabResult | None, stats: list[VersionStats] | None,
                  diversity: tuple[list[VersionDiversity], TrialDiversity | None] | None) -> None:
        self._cancel = None
        self.query_one("#lab-run", Button).label = "Run"
        if result is None or stats is None:
            self._status("the trial did not run")
            return
        self.result = result
        self.stats = stats
        if diversity is not None:
            self.diversity, self.trial_diversity = diversity
        self.query_one(LabSamplesTable).show(result)
        self._show_versions()
        trial, saved = result.trial_summary, result.saved_summary
        word = "stopped" if result.cancelled else "done"
        self._status(f"trial {result.trial} {word}: mean score {_mean(trial.mean_score)} "
                     f"(saved {_mean(saved.mean_score)}); ctrl+s saves {result.version} for runs")

    def action_save(self) -> None:
        template = self._template()
        if template is None:
            return
        if self.saved is not None and template.version == self.saved.version:
            self.notify(f"{template.version} is already the version runs use.")
            return
        self._save(template)

    @work(thread=True, group="lab-save", exit_on_error=False)
    def _save(self, template: PromptTemplate) -> None:
        app: Any = self.app
        try:
            save_version(app.store, template, activate=True)
        except Exception as error:  # noqa: BLE001 - shown as a dialog
            self.reads.fail(app, error)
            return
        self.reads.call(app, self._saved, template)

    def _saved(self, template: PromptTemplate) -> None:
        self.notify(f"Saved {template.name} version {template.version}; runs use it from now on.",
                    title="Prompt saved")
        self._request(template.name)


def _mean(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"
