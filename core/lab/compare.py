"""A trial's conversation against the baseline, in both orders, stored like `evaluate` stores verdicts."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from visinstruct.core.evaluation.aggregate import VerdictRow, compared_items
from visinstruct.core.models.backends.base import CompletionRequest
from visinstruct.core.config import Config
from visinstruct.core.evaluation.units import TASK_REQUESTS, transcript
from visinstruct.core.text.parse_scores import parse_verdict
from visinstruct.core.text.prompts import PromptTemplate, evaluation_messages
from visinstruct.core.store.queries import baseline_pairs
from visinstruct.core.records import Image, Pair
from visinstruct.core.models.calls import StageContext, make_call
from visinstruct.core.store.database import now

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
    """Ask the evaluator about `pairs` vs the baseline conversation of (image, task), both orders."""
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
    first, second = (ours_text, theirs_text) if order == "ours" else (theirs_text, ours_text)
    model = config.evaluation.model
    request = CompletionRequest(
        messages=evaluation_messages(template, image, TASK_REQUESTS.get(task, ""), first, second),
        max_tokens=config.evaluation.max_tokens, temperature=0.2, top_p=0.9, tag="evaluate")
    outcome = make_call(ctx, stage="evaluate", image_id=image.image_id, task=task, model=model,
                        prompt_version=template.version, request=request,
                        item=f"lab:{generation_id}:{order}")
    if outcome.result is None:
        return str(outcome.error or "cancelled")
    result = outcome.result
    verdict = parse_verdict(result.response.text)
    ours, theirs = ((verdict.first, verdict.second) if order == "ours"
                    else (verdict.second, verdict.first))
    ledger = ctx.ledger

    def write(conn: sqlite3.Connection) -> None:
        ledger.finish_ok(conn, result.call_id, result.response, result.latency_ms)
        conn.execute(
            "INSERT INTO evaluations (image_id, task, mode, item, shown_first, ours_score, "
            "baseline_score, parsed, rationale, call_id, prompt_version, model, "
            "generation_id, created_at) VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (image.image_id, task, MODE, order, ours, theirs, int(verdict.parsed),
             verdict.rationale or result.response.text, result.call_id, template.version,
             model, generation_id, now()))

    ctx.store.write_sync(write)
    return VerdictRow(image.image_id, task, MODE, 0, order, ours, theirs, verdict.parsed)
