"""One sample in full: picture, captions and boxes, our pairs beside the baseline's, the
verdicts."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from visinstruct.core.records import Pair
from visinstruct.core.review.samples import PairView, SampleDetail, VerdictView
from visinstruct.core.text.context import describe, relation_triples
from visinstruct.tui.widgets.image_preview import ImagePreview


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def pair_prompt(pair: PairView) -> Text:
    """How one of our pairs reads in the list: marks, question, answer, the judge's reason."""
    text = Text()
    text.append(f"#{pair.idx + 1} ", style="bold")
    text.append(f"score {_score(pair.score)} ", style="bold")
    if pair.gate_rule and pair.decision != "accept":
        text.append(f"gated: {pair.gate_rule} · a: restore", style="bold red")
    else:
        text.append("kept" if pair.kept else "dropped", style="green" if pair.kept else "red")
    if pair.gate_rule and pair.decision == "accept":
        text.append(f" · gated: {pair.gate_rule}, restored by you", style="cyan")
    elif pair.decision:
        text.append(f" · {pair.decision}ed by you", style="cyan")
    if pair.edited:
        text.append(" · edited", style="cyan")
    text.append(f"\nQ: {pair.question}\nA: {pair.answer}")
    if pair.gate_rule:
        text.append(f"\ngate {pair.gate_rule}: {pair.gate_reason}", style="red")
    for rule, why in pair.flags:
        text.append(f"\nflag {rule}: {why}", style="yellow")
    if pair.reason_missing:  # scored, but the reason says nothing: the score is all there is
        text.append(f"\njudge gave no reason: {pair.reason_missing}", style="yellow")
    elif pair.reason:
        text.append(f"\njudge: {pair.reason}", style="dim")
    if pair.edited:
        text.append(f"\noriginal Q: {pair.original_question}\noriginal A: {pair.original_answer}",
                    style="dim italic")
    return text


def baseline_text(pairs: tuple[Pair, ...]) -> Text:
    if not pairs:
        return Text("no baseline conversation for this task", style="dim")
    text = Text()
    for n, pair in enumerate(pairs, 1):
        if n > 1:
            text.append("\n\n")
        question = pair.question.replace("<image>", "").strip()
        text.append(f"#{n} ", style="bold")
        text.append(f"Q: {question}\nA: {pair.answer}")
    return text


def verdicts_text(verdicts: tuple[VerdictView, ...]) -> Text:
    if not verdicts:
        return Text("not evaluated", style="dim")
    text = Text()
    for n, verdict in enumerate(verdicts):
        if n:
            text.append("\n")
        first = "ours" if verdict.shown_first == "ours" else "baseline"
        item = f" item {verdict.item + 1}" if verdict.mode == "answers" else ""
        text.append(f"{verdict.mode}{item}, {first} shown first: ", style="bold")
        if verdict.parsed:
            text.append(f"ours {_score(verdict.ours_score)} · baseline "
                        f"{_score(verdict.baseline_score)}")
        else:
            text.append("unparsed", style="magenta")
        if verdict.rationale:
            rationale = " ".join(verdict.rationale.split())
            text.append(f"\n  {rationale[:300]}", style="dim")
    return text


def context_text(detail: SampleDetail) -> Text:
    image = detail.image
    text = Text()
    text.append(f"{image.file_name} {image.width}x{image.height}\n", style="dim")
    for caption in image.captions:
        text.append(f"• {' '.join(caption.split())}\n")
    if image.boxes:
        boxes = ", ".join(f"{b.category} [{', '.join(f'{v:.2f}' for v in b.bbox)}]"
                          for b in image.boxes[:12])
        more = f" (+{len(image.boxes) - 12} more)" if len(image.boxes) > 12 else ""
        text.append(f"boxes: {boxes}{more}", style="dim")
    if image.objects:  # a GQA scene graph: objects, then relations as triples
        text.append(f"GQA {image.source_id}: "
                    + ", ".join(describe(o) for o in image.objects) + "\n")
        for triple in relation_triples(image)[:12]:
            text.append(f"• {triple}\n", style="dim")
    for fact in image.facts[:12]:
        text.append(f"Q: {fact.question} A: {fact.answer}\n", style="dim")
    return text


class SampleDetailPane(VerticalScroll):
    """Fills its parts from a SampleDetail; `selected_pair` is the highlighted pair of ours."""

    DEFAULT_CSS = """
    SampleDetailPane {
        height: 1fr;
        padding: 0 1;
    }
    SampleDetailPane .detail-heading {
        text-style: bold;
        color: $text-accent;
    }
    SampleDetailPane #verdicts, SampleDetailPane #conversations {
        margin-bottom: 1;
    }
    SampleDetailPane #detail-title {
        text-style: bold;
        margin-bottom: 1;
    }
    SampleDetailPane #conversations {
        height: auto;
    }
    SampleDetailPane #conversations > Vertical {
        width: 1fr;
        height: auto;
    }
    SampleDetailPane #ours-column {
        margin-right: 1;
    }
    SampleDetailPane #ours {
        height: auto;
        max-height: 100%;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.detail: SampleDetail | None = None

    def compose(self) -> ComposeResult:
        yield Static("Pick a sample in the list.", id="detail-title")
        with Horizontal(id="conversations"):
            with Vertical(id="ours-column"):
                yield Static("Ours", classes="detail-heading")
                yield OptionList(id="ours")
            with Vertical(id="baseline-column"):
                yield Static("Baseline", classes="detail-heading")
                yield Static("", id="baseline")
        yield Static("Evaluation", classes="detail-heading")
        yield Static("", id="verdicts")
        yield Static("Context", classes="detail-heading")
        yield ImagePreview(id="preview")
        yield Static("", id="detail-context")

    def clear(self, message: str) -> None:
        """Show no sample (say why) and disable the pane, so no key can act on a hidden pair."""
        self.detail = None
        self.query_one("#detail-title", Static).update(Text(message, style="bold"))
        self.query_one("#ours", OptionList).clear_options()
        for part in ("#baseline", "#verdicts", "#detail-context"):
            self.query_one(part, Static).update("")
        self.disabled = True

    async def show(self, detail: SampleDetail, picture: Path | None) -> None:
        """Show `detail`; keeps the highlighted pair when the same sample is shown again."""
        self.disabled = False
        same = self.detail is not None and self.detail.generation_id == detail.generation_id
        ours = self.query_one("#ours", OptionList)
        keep = ours.highlighted if same else None
        self.detail = detail
        title = Text(f"Image {detail.image.image_id} · {detail.task}", style="bold")
        if detail.generation_id is not None:
            title.append(f" · prompt {detail.prompt_version} · {detail.model}", style="dim")
        if detail.generator_saw or detail.judge_saw:
            def saw(flag: bool) -> str:
                return "saw" if flag else "did not see"
            title.append(f"\npicture: the generator {saw(detail.generator_saw)} it, the judge "
                         f"{saw(detail.judge_saw)} it", style="dim")
        others = [t for t in detail.tasks if t != detail.task]
        if others:
            title.append(f"\nother tasks: {', '.join(others)} (t: next task)", style="dim")
        self.query_one("#detail-title", Static).update(title)
        await self.query_one("#preview", ImagePreview).show(picture)
        self.query_one("#detail-context", Static).update(context_text(detail))
        ours.clear_options()
        if detail.status == "parse_failure":
            problems = "; ".join(detail.problems) or "no readable pairs"
            ours.add_option(Option(Text(f"parse failure: {problems}\n\nraw output:\n"
                                        f"{detail.raw[:2000]}", style="magenta"),
                                   disabled=True))
        elif detail.generation_id is None:
            ours.add_option(Option(Text("not generated yet", style="dim"), disabled=True))
        else:
            ours.add_options([Option(pair_prompt(p), id=str(p.pair_id)) for p in detail.pairs])
            if detail.pairs:
                ours.highlighted = min(keep or 0, len(detail.pairs) - 1)
        self.query_one("#baseline", Static).update(baseline_text(detail.baseline))
        self.query_one("#verdicts", Static).update(verdicts_text(detail.verdicts))

    @property
    def selected_pair(self) -> PairView | None:
        if self.detail is None or not self.detail.pairs:
            return None
        index = self.query_one("#ours", OptionList).highlighted
        if index is None or not 0 <= index < len(self.detail.pairs):
            return None
        return self.detail.pairs[index]
