"""The review list's filters: words to search, task, scores, state, gate rule, prompt version."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Input, Select

from visinstruct.core.records import TASKS
from visinstruct.core.review.samples import STATES, SampleFilter
from visinstruct.core.text.gates import RULES

# Each shows the samples with at least one pair of that verdict (core/store/verdicts.py).
STATE_LABELS = {
    "kept": "kept",
    "dropped": "dropped",
    "unjudged": "unjudged",
    "gated": "dropped by a gate",
    "flagged": "flagged",
    "parse_failure": "parse failure",
    "evaluated": "evaluated",
    "reviewed": "reviewed by you",
}


class ReviewFilters(Horizontal):
    """Posts FiltersChanged when a select changes or a box (search words, scores) is submitted."""

    DEFAULT_CSS = """
    ReviewFilters {
        height: 1;
        width: 100%;
    }
    ReviewFilters Select {
        width: 1fr;
        min-width: 12;
        margin-right: 1;
    }
    ReviewFilters #filter-version {
        width: 2fr;
    }
    ReviewFilters Input {
        width: 10;
        margin-right: 1;
    }
    ReviewFilters #filter-text {
        width: 2fr;
    }
    """

    class FiltersChanged(Message):
        """The filters the list should use now."""

        def __init__(self, filters: SampleFilter) -> None:
            super().__init__()
            self.filters = filters

    class FilterInvalid(Message):
        """A score box holds something that is not a number from 1 to 10."""

        def __init__(self, problem: str) -> None:
            super().__init__()
            self.problem = problem

    class Submitted(Message):
        """Enter in a box whose filters are valid: the list takes the keys again."""

    def compose(self) -> ComposeResult:
        yield Input(placeholder="search words", id="filter-text", compact=True)
        yield Select([(t, t) for t in TASKS], prompt="any task", id="filter-task", compact=True,
                     type_to_search=False)
        yield Input(placeholder="min score", id="filter-min", compact=True)
        yield Input(placeholder="max score", id="filter-max", compact=True)
        yield Select([(STATE_LABELS[s], s) for s in STATES], prompt="any state",
                     id="filter-state", compact=True, type_to_search=False)
        yield Select([(rule.replace("_", " "), rule) for rule in RULES], prompt="any gate",
                     id="filter-rule", compact=True, type_to_search=False)
        yield Select([], prompt="any prompt version", id="filter-version", compact=True,
                     type_to_search=False)

    def set_versions(self, versions: Sequence[tuple[str, str]]) -> None:
        """Offer these (version, task) pairs in the prompt version select."""
        select = self.query_one("#filter-version", Select)
        current = select.value
        select.set_options([(f"{version} {task}", version) for version, task in versions])
        if current is not Select.NULL and any(v == current for v, _ in versions):
            select.value = current

    def clear(self) -> None:
        """Every filter back to 'any' (one FiltersChanged follows)."""
        with self.prevent(Select.Changed):
            for select in self.query(Select):
                if select.id != "filter-version" or select.value is not Select.NULL:
                    select.clear()
            for box in self.query(Input):
                box.value = ""
        self._changed()

    def focus_first(self) -> None:
        self.query_one("#filter-text", Input).focus()

    def current(self) -> SampleFilter | None:
        """The filters as typed, or None (and a FilterInvalid message) if a score is not a
        number."""
        scores: list[float | None] = []
        for box_id in ("#filter-min", "#filter-max"):
            text = self.query_one(box_id, Input).value.strip()
            if not text:
                scores.append(None)
                continue
            try:
                value = float(text)
            except ValueError:
                value = -1.0
            if not 0 <= value <= 10:
                self.post_message(self.FilterInvalid(
                    f"score filter {text!r} is not a number from 0 to 10; fix or clear it"))
                return None
            scores.append(value)

        def chosen(select_id: str) -> str | None:
            value = self.query_one(select_id, Select).value
            return None if value is Select.NULL else str(value)

        words = self.query_one("#filter-text", Input).value.strip() or None
        return SampleFilter(chosen("#filter-task"), scores[0], scores[1], chosen("#filter-state"),
                            chosen("#filter-version"), rule=chosen("#filter-rule"), text=words)

    def _changed(self) -> bool:
        filters = self.current()
        if filters is not None:
            self.post_message(self.FiltersChanged(filters))
        return filters is not None

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self._changed()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self._changed():
            self.post_message(self.Submitted())
