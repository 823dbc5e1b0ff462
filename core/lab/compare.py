"""A trial's conversation against the baseline, in both orders, through `evaluate`'s verdicts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from visinstruct.core.config import Config
from visinstruct.core.evaluation.aggregate import VerdictRow, compared_items
from visinstruct.core.evaluation.units import TASK_REQUESTS, transcript
from visinstruct.core.evaluation.verdicts import Pictures, ask_verdict
from visinstruct.core.models.calls import StageContext
from visinstruct.core.records import Image, Pair
from visinstruct.core.store.queries import baseline_pairs
from visinstruct.core.text.prompts import PromptTemplate

ORDERS = ("ours", "baseline")
MODE = "conversation"


@dataclass(frozen=True)
class Comparison:
    """Both sides' scores averaged over the parsed orders; None when nothing could be compared."""

    ours: float | None
    baseline: float | None
    unparsed: int
    note: str = ""


def compare_with_baseline(ctx: StageContext, config: Config, template: PromptTemplate,
                          image: Image, task: str, generation_id: int,
                          pairs: Sequence[Pair]) -> Comparison:
    """Ask the evaluator about `pairs` vs (image, task)'s baseline conversation, both orders."""
    baseline = next((p for _, p in baseline_pairs(ctx.store, image.image_id, task)), ())
    if not baseline:
        return Comparison(None, None, 0, "no baseline conversation for this image and task")
    if not pairs:
        return Comparison(None, None, 0, "no kept pairs to compare")
    verdicts: list[VerdictRow] = []
    for order in ORDERS:
        if ctx.cancel.is_set():
            break
        asked = _ask(ctx, config, template, image, task, generation_id, order,
                     transcript(pairs), transcript(baseline))
        if isinstance(asked, str):
            return Comparison(None, None, 0, asked)
        verdicts.append(asked)
    items = compared_items(verdicts)
    unparsed = sum(not v.parsed for v in verdicts)
    if not items:
        return Comparison(None, None, unparsed, "the evaluator's verdicts could not be read")
    return Comparison(items[0].ours, items[0].baseline, unparsed)


def _ask(ctx: StageContext, config: Config, template: PromptTemplate, image: Image, task: str,
         generation_id: int, order: str, ours_text: str, theirs_text: str) -> VerdictRow | str:
    """One verdict with `order`'s side shown first, stored; the error text if the call failed."""
    outcome, row = ask_verdict(
        ctx, config, template, image, task, request_text=TASK_REQUESTS.get(task, ""),
        ours=ours_text, theirs=theirs_text, order=order, mode=MODE, item=0,
        generation_id=generation_id, picture=Pictures(config).load(image),
        call_item=f"lab:{generation_id}:{order}")
    if row is None:
        return str(outcome.error or "cancelled")
    return row
