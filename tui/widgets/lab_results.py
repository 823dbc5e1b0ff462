"""The prompt lab's tables: per image results of a trial, and prompt versions side by side."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

from visinstruct.core.analysis.diversity import Diversity
from visinstruct.core.analysis.versions import VersionDiversity
from visinstruct.core.lab.diversity import TrialDiversity
from visinstruct.core.lab.trials import LabResult, LabSample, LabSummary, VersionStats

TASK_SHORT = {"conversation": "conv", "detail": "detail", "complex_reasoning": "reason"}


def number(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def rate(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _scores(sample: LabSample) -> str:
    return " ".join("?" if s is None else f"{s:g}" for s in sample.scores) or "–"


def _outcome(sample: LabSample) -> Text:
    if sample.error:
        return Text(f"call failed: {sample.error}", style="red")
    if sample.parse_failure:
        return Text("parse failure: " + ("; ".join(sample.problems) or "no pairs"),
                    style="magenta")
    if sample.ours_score is not None and sample.baseline_score is not None:
        return Text(f"vs base {sample.ours_score:g}:{sample.baseline_score:g}")
    if sample.note:
        return Text(sample.note, style="dim")
    return Text("from the run" if sample.reused else "", style="dim")


class LabSamplesTable(DataTable[object]):
    """One row per image and version: pairs, scores, kept, and what went wrong."""

    DEFAULT_CSS = """
    LabSamplesTable {
        height: auto;
        max-height: 12;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        # Fixed widths: the layout never depends on which rows arrived first.
        # Narrow enough for the lab's right pane at 120 columns (78 wide with cell padding).
        for label, width in (("image", 6), ("task", 6), ("version", 7), ("pairs", 5),
                             ("scores", 11), ("kept", 4), ("mean", 4), ("notes", 20)):
            self.add_column(label, key=label, width=width)

    def show(self, result: LabResult) -> None:
        self.clear()
        for tried, saved in zip(result.trial_samples, result.saved_samples, strict=True):
            rows = [(tried, "trial")] if tried is saved else [(tried, "trial"), (saved, "saved")]
            for sample, label in rows:
                self.add_row(str(sample.image_id), TASK_SHORT.get(sample.task, sample.task),
                             label, str(sample.pairs), _scores(sample),
                             str(sample.kept), number(sample.mean_score), _outcome(sample))


class VersionTable(DataTable[object]):
    """Saved and trial versions: over all their data, and over this trial's images."""

    DEFAULT_CSS = """
    VersionTable {
        height: auto;
        max-height: 10;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        for label, width in (("version", 15), ("on", 5), ("n", 7), ("mean", 4), ("keep", 4),
                             ("fail", 4), ("rel.", 10)):
            self.add_column(label, key=label, width=width)

    def show(self, stats: Sequence[VersionStats], trial_version: str | None,
             result: LabResult | None) -> None:
        """Rows for the active version, the trial version (when it differs) and other versions."""
        self.clear()
        if result is not None:
            for summary, label in ((result.saved_summary, "saved"),
                                   (result.trial_summary, "trial")):
                if label == "trial" and result.version == result.saved_version:
                    continue
                self._summary_row(summary, label)
        shown = 0
        for item in stats:
            wanted = item.active or item.version == trial_version
            if not wanted and shown >= 4:
                continue
            shown += 1
            label = "active" if item.active else ("trial" if item.version == trial_version else "")
            self.add_row(f"{label} {item.version[:8]}".strip(), "all",
                         f"{item.samples:,}", number(item.mean_score), rate(item.keep_rate),
                         rate(item.parse_failure_rate),
                         number(item.relative_score) + (f" ({item.evaluated})"
                                                        if item.evaluated else ""))

    def _summary_row(self, summary: LabSummary, label: str) -> None:
        self.add_row(f"{label} {summary.version[:8]}", "these", str(summary.samples),
                     number(summary.mean_score), rate(summary.keep_rate),
                     rate(summary.parse_failure_rate), number(summary.relative_score))


def _diversity_cells(d: Diversity) -> tuple[str, ...]:
    return (f"{d.sample_answers:,}", number(d.distinct_1, 2), number(d.distinct_2, 2),
            number(d.self_bleu, 2), rate(d.near_duplicate_rate), number(d.compression_ratio, 1),
            rate(d.template_share))


class DiversityTable(DataTable[object]):
    """Per version: distinct-1/2, self-BLEU, near-duplicates, zlib ratio, top-10 template share,
    each with the baseline's on the same images in the row below."""

    DEFAULT_CSS = """
    DiversityTable {
        height: auto;
        max-height: 14;
    }
    """
    BASELINE = "  GPT-4"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        for label, width in (("version", 13), ("n", 5), ("d-1", 4), ("d-2", 4), ("sBLEU", 5),
                             ("near", 4), ("zlib", 4), ("tpl", 4)):
            self.add_column(label, key=label, width=width)

    def show(self, versions: Sequence[VersionDiversity], stats: Sequence[VersionStats],
             trial_version: str | None, trial: TrialDiversity | None) -> None:
        """The trial's sides on its images first, then the versions the version table shows."""
        self.clear()
        if trial is not None:
            for label, side in (("trial: these", trial.trial), ("saved: these", trial.saved),
                                (self.BASELINE, trial.baseline)):
                self.add_row(label, *_diversity_cells(side))
        by_version = {v.version: v for v in versions}
        shown = 0
        for item in stats:
            found = by_version.get(item.version)
            wanted = item.active or item.version == trial_version
            if found is None or (not wanted and shown >= 4):
                continue
            shown += 1
            label = "active" if item.active else ("trial" if item.version == trial_version else "")
            self.add_row(f"{label} {item.version[:6]}".strip(), *_diversity_cells(found.ours))
            self.add_row(self.BASELINE, *_diversity_cells(found.baseline))
