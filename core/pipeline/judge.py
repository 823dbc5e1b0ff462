"""Judging: one call per conversation, one score per pair, kept at or above the threshold."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from visinstruct.core.config import JudgeConfig
from visinstruct.core.errors import StoreError
from visinstruct.core.events import PairsJudged
from visinstruct.core.models.backends.base import CompletionRequest
from visinstruct.core.models.calls import (
    CallOutcome,
    StageContext,
    fail_answered,
    make_call,
    store_result,
)
from visinstruct.core.pipeline.rows import pair_ids
from visinstruct.core.records import Image, Judgement, Pair
from visinstruct.core.store.database import RowRef, Store, now
from visinstruct.core.store.verdicts import is_kept_score
from visinstruct.core.text.parse_scores import parse_judgement
from visinstruct.core.text.prompts import PromptTemplate, judge_messages, output_schema


@dataclass(frozen=True)
class JudgeResult:
    """The judgements of one conversation (queued for writing) and how many pairs were kept."""

    judgements: tuple[Judgement, ...]
    kept: int
    written: Future[int] | None = field(default=None, compare=False)



def judge_request(template: PromptTemplate, image: Image, pairs: tuple[Pair, ...],
                  settings: JudgeConfig, picture: bytes | None = None) -> CompletionRequest:
    """The request rating every pair of one conversation (with the picture when given)."""
    return CompletionRequest(
        messages=judge_messages(template, image, pairs, picture),
        max_tokens=settings.max_tokens,
        temperature=max(settings.temperature, 0.0),
        top_p=0.9,
        json_schema=output_schema(template),
        tag=f"judge:{len(pairs)}",
    )


def stored_pairs(store: Store, generation_id: int) -> list[tuple[int, Pair]]:
    """(pair id, pair) of a generation, in order."""
    return [(row[0], Pair(row[1], row[2])) for row in store.query(
        "SELECT id, question, answer FROM pairs WHERE generation_id = ? ORDER BY idx",
        (generation_id,))]


def judge(ctx: StageContext, template: PromptTemplate, image: Image, task: str,
          generation: RowRef | int, pair_rows: Sequence[tuple[int, Pair]] | Sequence[Pair],
          settings: JudgeConfig, model: str, *, indices: Sequence[int] | None = None,
          announce: bool = True, picture: bytes | None = None) -> JudgeResult | CallOutcome:
    """Rate the pairs of one generation; a failed call comes back as its CallOutcome.

    `generation` may be a RowRef whose insert is still queued: the write resolves it.
    `indices` are the pairs' positions in the generation (default: all of them, in order),
    so gated pairs can be left out; `announce` False leaves PairsJudged to the caller;
    `picture` is sent when given (only to a judge that sees).
    """
    pairs = tuple(p if isinstance(p, Pair) else p[1] for p in pair_rows)
    positions = list(indices) if indices is not None else list(range(len(pairs)))
    ref = generation if isinstance(generation, RowRef) else RowRef(generation)
    request = judge_request(template, image, pairs, settings, picture)
    if ref.id is None:
        item = f"{template.version}:{len(pairs)}"
    else:
        item = str(ref.id) if indices is None else f"{ref.id}:{','.join(map(str, positions))}"
    outcome = make_call(ctx, stage="judge", image_id=image.image_id, task=task, model=model,
                        prompt_version=template.version, request=request, item=item)
    if outcome.result is None:
        return outcome
    return handle_judgement(ctx, template, image, task, ref, pairs, settings, model, outcome,
                            positions=positions, announce=announce)


def handle_judgement(ctx: StageContext, template: PromptTemplate, image: Image, task: str,
                     generation: RowRef | int, pairs: tuple[Pair, ...], settings: JudgeConfig,
                     model: str, outcome: CallOutcome, *, positions: Sequence[int] | None = None,
                     announce: bool = True) -> JudgeResult | CallOutcome:
    """Read the scores of a successful judge call and queue them with its ledger row.

    `positions` are the judged pairs' indices in the generation (default: all, in order).
    """
    if positions is None:
        positions = list(range(len(pairs)))
    result = outcome.result
    assert result is not None
    ref = generation if isinstance(generation, RowRef) else RowRef(generation)
    try:
        judgements = parse_judgement(result.response.text, len(pairs))
    except Exception as exc:  # noqa: BLE001 - the call was paid: it ends in the ledger, as failed
        return fail_answered(ctx, outcome, exc)
    ledger = ctx.ledger

    def write(conn: sqlite3.Connection) -> int:
        if ref.id is None:
            raise StoreError("the generation this call judged was not stored")
        ledger.finish_ok(conn, result.call_id, result.response, result.latency_ms)
        ids = pair_ids(conn, ref)
        created = now()
        conn.executemany(
            "INSERT INTO judgements (pair_id, generation_id, score, reason, call_id, "
            "prompt_version, model, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(ids[idx], ref.id, j.score, j.reason, result.call_id, template.version,
              model, created) for idx, j in zip(positions, judgements, strict=False) if idx in ids])
        return int(ref.id or 0)

    kept = sum(is_kept_score(j.score, settings.threshold) for j in judgements)

    def committed(gid: int) -> None:
        ctx.emit(ledger.finished_event(outcome.info, result.call_id, result.response,
                                       result.latency_ms, result.attempt))
        if announce:
            ctx.emit(PairsJudged(gid, image.image_id, task, tuple(j.score for j in judgements),
                                 kept, settings.threshold))

    written = store_result(ctx, outcome, write, committed)
    return JudgeResult(judgements, kept, written)
