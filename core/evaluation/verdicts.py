"""One way to ask an evaluator for a verdict and record it: evaluations and the lab share it.

Ours against the baseline in one order, with the picture when the evaluator sees and the
configured `[evaluation] temperature`; the verdict row and the ledger's finish commit together.
"""

from __future__ import annotations

import sqlite3
import threading

from visinstruct.core.config import Config, sees_images
from visinstruct.core.evaluation.aggregate import VerdictRow
from visinstruct.core.models.backends.base import CompletionRequest
from visinstruct.core.models.calls import (
    CallOutcome,
    NotStored,
    StageContext,
    fail_answered,
    make_call,
    store_result,
)
from visinstruct.core.models.pictures import PictureCache, PictureError, picture_folder
from visinstruct.core.records import Image
from visinstruct.core.store.database import now
from visinstruct.core.text.parse_scores import parse_verdict
from visinstruct.core.text.prompts import PromptTemplate, evaluation_messages


class Pictures:
    """The pictures an evaluator that sees is shown; unusable ones are noted, once each.

    Prepared by the shared picture step (core/models/pictures.py): upright, RGB, at most the
    evaluator's `image_max_side`, JPEG. An image whose picture is unusable is compared on
    its captions and boxes, and named in the evaluation's notice.
    """

    def __init__(self, config: Config, cache: PictureCache | None = None) -> None:
        model = config.model(config.evaluation.model)
        self.sees = sees_images(model)
        self.max_side = model.image_max_side
        self.cache = cache or PictureCache(config.source)
        self.unusable: dict[int, str] = {}
        self._lock = threading.Lock()

    def load(self, image: Image) -> bytes | None:
        """The picture's JPEG; None when the evaluator is blind or the picture is unusable."""
        if not self.sees or picture_folder(self.cache.source, image) is None:
            return None
        try:
            return self.cache.get(image, self.max_side).data
        except PictureError as error:
            with self._lock:
                self.unusable.setdefault(image.image_id, str(error))
            return None


def verdict_request(config: Config, template: PromptTemplate, image: Image, request_text: str,
                    ours: str, theirs: str, order: str,
                    picture: bytes | None) -> CompletionRequest:
    """The evaluator's request with `order`'s side shown first, at `[evaluation] temperature`."""
    first, second = (ours, theirs) if order == "ours" else (theirs, ours)
    return CompletionRequest(
        messages=evaluation_messages(template, image, request_text, first, second,
                                     picture=picture),
        max_tokens=config.evaluation.max_tokens, temperature=config.evaluation.temperature,
        top_p=0.9, tag="evaluate")


def record_verdict(ctx: StageContext, config: Config, template: PromptTemplate, image: Image,
                   task: str, *, mode: str, item: int, order: str, generation_id: int | None,
                   outcome: CallOutcome) -> tuple[VerdictRow | None, CallOutcome]:
    """Store the verdict of an answered evaluator call (online or from a batch job).

    Returns the verdict and the call; when reading or storing the reply fails, no verdict
    and the call as failed (its ledger row says so: a paid call always ends there).
    """
    result = outcome.result
    assert result is not None
    text = result.response.text
    try:
        verdict = parse_verdict(text)
    except Exception as exc:  # noqa: BLE001 - a paid call ends in the ledger, as failed
        return None, fail_answered(ctx, outcome, exc)
    if order == "ours":
        ours_score, baseline_score = verdict.first, verdict.second
    else:
        ours_score, baseline_score = verdict.second, verdict.first
    rationale = (verdict.rationale or text) if verdict.parsed else text
    ledger = ctx.ledger
    model = config.evaluation.model

    def write(conn: sqlite3.Connection) -> None:
        ledger.finish_ok(conn, result.call_id, result.response, result.latency_ms)
        conn.execute(
            "INSERT INTO evaluations (image_id, task, mode, item, shown_first, ours_score, "
            "baseline_score, parsed, rationale, call_id, prompt_version, model, "
            "generation_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (image.image_id, task, mode, item, order, ours_score, baseline_score,
             int(verdict.parsed), rationale, result.call_id, template.version, model,
             generation_id, now()))

    stored = store_result(ctx, outcome, write, lambda _: None).result()
    if isinstance(stored, NotStored):
        return None, CallOutcome(outcome.info, None, stored.error)
    return VerdictRow(image.image_id, task, mode, item, order, ours_score, baseline_score,
                      verdict.parsed), outcome


def ask_verdict(ctx: StageContext, config: Config, template: PromptTemplate, image: Image,
                task: str, *, request_text: str, ours: str, theirs: str, order: str,
                mode: str, item: int, generation_id: int | None, picture: bytes | None,
                call_item: str) -> tuple[CallOutcome, VerdictRow | None]:
    """Ask once with `order`'s side shown first and store the verdict; None if the call failed
    (then the outcome carries the error)."""
    request = verdict_request(config, template, image, request_text, ours, theirs, order,
                              picture)
    outcome = make_call(ctx, stage="evaluate", image_id=image.image_id, task=task,
                        model=config.evaluation.model, prompt_version=template.version,
                        request=request, item=call_item)
    if outcome.result is None:
        return outcome, None
    row, outcome = record_verdict(ctx, config, template, image, task, mode=mode, item=item,
                                  order=order, generation_id=generation_id, outcome=outcome)
    return outcome, row
