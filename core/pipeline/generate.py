"""Generation: prompt -> call -> parse -> pairs, written with its ledger row in one transaction."""

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import Future
from dataclasses import dataclass, field

from visinstruct.core.config import GatesConfig, GenerationConfig
from visinstruct.core.events import GenerationParsed
from visinstruct.core.models.backends.base import CompletionRequest
from visinstruct.core.models.calls import (
    CallOutcome,
    StageContext,
    fail_answered,
    make_call,
    store_result,
)
from visinstruct.core.models.ledger import MAX_RAW
from visinstruct.core.pipeline.gating import insert_verdicts
from visinstruct.core.pipeline.rows import GenerationRef, insert_pairs
from visinstruct.core.records import Image, Pair
from visinstruct.core.store.database import RowRef, now
from visinstruct.core.text.gates import DROP, Verdicts, gate_pairs, is_cut_off, prompt_text
from visinstruct.core.text.parse_pairs import parse_pairs
from visinstruct.core.text.prompts import (
    PromptTemplate,
    generation_messages,
    output_schema,
    pick_description_request,
)


@dataclass(frozen=True)
class GenerationResult:
    """A generation queued for writing: its row reference, its pairs and what went wrong.

    `ref.id` is known to later writes; `generation_id` waits for the commit.
    """

    ref: RowRef
    pairs: tuple[Pair, ...]
    parse_failure: bool
    problems: tuple[str, ...] = ()
    outcome: CallOutcome | None = None
    written: Future[int] | None = field(default=None, compare=False)
    verdicts: tuple[Verdicts, ...] = ()

    def passing(self) -> list[tuple[int, Pair]]:
        """(index, pair) of the pairs no gate dropped: the ones the judge sees."""
        return [(idx, pair) for idx, pair in enumerate(self.pairs)
                if not any(v.action == DROP for v in
                           (self.verdicts[idx] if idx < len(self.verdicts) else ()))]

    @property
    def generation_id(self) -> int:
        """The stored id (blocks until the write has committed)."""
        if self.written is not None:
            self.written.result()
        return int(self.ref.id or 0)


def generation_request(template: PromptTemplate, image: Image, settings: GenerationConfig,
                       task: str, picture: bytes | None = None) -> CompletionRequest:
    """The request for one (image, task), asking for JSON where the backend can enforce it;
    the picture goes with it when given."""
    return CompletionRequest(
        messages=generation_messages(template, image, picture),
        max_tokens=settings.max_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        json_schema=output_schema(template),
        tag=f"generate:{task}",
    )


def insert_generation(conn: sqlite3.Connection, image_id: int, task: str, prompt_version: str,
                      model: str, call_id: int | None, status: str, raw: str,
                      pairs: tuple[Pair, ...], problems: tuple[str, ...], purpose: str = "run",
                      *, finish_reason: str = "", verdicts: tuple[Verdicts, ...] = (),
                      ref: GenerationRef | None = None) -> int:
    """Write a generation, its pairs and their gate verdicts; returns the generation id.

    The raw text is kept as the ledger keeps a reply: its first MAX_RAW characters.
    A `ref` learns the pairs' ids (its `id` is the caller's to set, once every row is in).
    """
    cursor = conn.execute(
        "INSERT INTO generations (image_id, task, prompt_version, model, call_id, status, raw, "
        "problems, purpose, finish_reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (image_id, task, prompt_version, model, call_id, status, raw[:MAX_RAW],
         json.dumps(list(problems)), purpose, finish_reason, now()))
    generation_id = int(cursor.lastrowid or 0)
    ids = insert_pairs(conn, generation_id, [(p.question, p.answer) for p in pairs])
    insert_verdicts(conn, generation_id, verdicts, ids)
    if ref is not None:
        ref.pair_ids = ids
    return generation_id


def generate(ctx: StageContext, template: PromptTemplate, image: Image, task: str,
             settings: GenerationConfig, model: str,
             purpose: str = "run",
             gates: GatesConfig | None = None,
             picture: bytes | None = None) -> GenerationResult | CallOutcome:
    """Generate pairs for one (image, task) and gate them; a failed call returns its CallOutcome.

    `purpose` "lab" marks prompt-lab trials, which never count as the run's data; `picture`
    is sent when given (only to a model that sees).
    """
    ref = RowRef()
    if not image.has_context:
        # Nothing to describe: a counted row, not a call that would make things up.
        no_captions: tuple[str, ...] = ("the image has no captions",)

        def write_empty(conn: sqlite3.Connection) -> int:
            ref.id = insert_generation(conn, image.image_id, task, template.version, model, None,
                                       "parse_failure", "", (), no_captions, purpose)
            return ref.id

        written = ctx.store.write(write_empty, on_commit=lambda gid: ctx.emit(
            GenerationParsed(gid, image.image_id, task, 0, True, no_captions)))
        return GenerationResult(ref, (), True, no_captions, None, written)
    request = generation_request(template, image, settings, task, picture)
    outcome = make_call(ctx, stage="generate", image_id=image.image_id, task=task, model=model,
                        prompt_version=template.version, request=request,
                        item="" if purpose == "run" else purpose)
    if outcome.result is None:
        return outcome
    return handle_generation(ctx, template, image, task, model, outcome, purpose, gates,
                             settings.max_pairs)


def handle_generation(ctx: StageContext, template: PromptTemplate, image: Image, task: str,
                      model: str, outcome: CallOutcome, purpose: str = "run",
                      gates: GatesConfig | None = None,
                      max_pairs: int = 10) -> GenerationResult | CallOutcome:
    """Parse and gate a successful generation call, queued with its ledger row (online or batch)."""
    result = outcome.result
    assert result is not None
    ref = GenerationRef()
    text = result.response.text
    try:
        request_text = (pick_description_request(template, image.image_id)
                        if task == "detail" else "")
        parsed = parse_pairs(text, task, description_request=request_text)
        pairs, problems = limit_pairs(parsed.pairs, tuple(parsed.problems), max_pairs)
        finish_reason = result.response.finish_reason
        verdicts = gate_pairs(pairs, image, task, gates or GatesConfig(),
                              prompt=prompt_text(template), finish_reason=finish_reason)
    except Exception as exc:  # noqa: BLE001 - the call was paid: it ends in the ledger, as failed
        return fail_answered(ctx, outcome, exc)
    if is_cut_off(finish_reason) and task != "detail":
        problems += ("output was cut at max_tokens",)
    status = "ok" if pairs else "parse_failure"
    ledger = ctx.ledger

    def write(conn: sqlite3.Connection) -> int:
        ledger.finish_ok(conn, result.call_id, result.response, result.latency_ms)
        generation_id = insert_generation(conn, image.image_id, task, template.version, model,
                                          result.call_id, status, text, pairs, problems, purpose,
                                          finish_reason=finish_reason, verdicts=verdicts,
                                          ref=ref)
        ref.id = generation_id  # only once every row is in: a failed write leaves it unset
        return generation_id

    def committed(gid: int) -> None:
        ctx.emit(ledger.finished_event(outcome.info, result.call_id, result.response,
                                       result.latency_ms, result.attempt))
        ctx.emit(GenerationParsed(gid, image.image_id, task, len(pairs), not pairs, problems))

    written = store_result(ctx, outcome, write, committed)
    return GenerationResult(ref, pairs, not pairs, problems, outcome, written, verdicts)


def limit_pairs(pairs: tuple[Pair, ...], problems: tuple[str, ...],
                max_pairs: int) -> tuple[tuple[Pair, ...], tuple[str, ...]]:
    """At most `max_pairs` pairs (the first ones), noting how many were dropped."""
    if len(pairs) <= max_pairs:
        return pairs, problems
    return pairs[:max_pairs], (*problems, f"kept the first {max_pairs} of {len(pairs)} pairs "
                                          "([generation].max_pairs)")
