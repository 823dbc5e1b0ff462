"""Generation: prompt -> call -> parse -> pairs, written with its ledger row in one transaction."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from visinstruct.core.backends.base import CompletionRequest
from visinstruct.core.config import GenerationConfig
from visinstruct.core.events import GenerationParsed
from visinstruct.core.parse_pairs import parse_pairs
from visinstruct.core.prompts import (
    PromptTemplate,
    generation_messages,
    output_schema,
    pick_description_request,
)
from visinstruct.core.records import Image, Pair
from visinstruct.core.stages import CallOutcome, StageContext, make_call
from visinstruct.core.store import now


@dataclass(frozen=True)
class GenerationResult:
    """A stored generation: its id, its pairs (empty on a parse failure) and what went wrong."""

    generation_id: int
    pairs: tuple[Pair, ...]
    parse_failure: bool
    problems: tuple[str, ...] = ()
    outcome: CallOutcome | None = None


def generation_request(template: PromptTemplate, image: Image, settings: GenerationConfig,
                       task: str) -> CompletionRequest:
    """The request for one (image, task), asking for JSON where the backend can enforce it."""
    return CompletionRequest(
        messages=generation_messages(template, image),
        max_tokens=settings.max_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        json_schema=output_schema(template),
        tag=f"generate:{task}",
    )


def insert_generation(conn: sqlite3.Connection, image_id: int, task: str, prompt_version: str,
                      model: str, call_id: int | None, status: str, raw: str,
                      pairs: tuple[Pair, ...], problems: tuple[str, ...], purpose: str = "run") -> int:
    """Write a generation and its pairs; returns the generation id."""
    cursor = conn.execute(
        "INSERT INTO generations (image_id, task, prompt_version, model, call_id, status, raw, "
        "problems, purpose, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (image_id, task, prompt_version, model, call_id, status, raw,
         json.dumps(list(problems)), purpose, now()))
    generation_id = int(cursor.lastrowid or 0)
    conn.executemany(
        "INSERT INTO pairs (generation_id, idx, question, answer) VALUES (?, ?, ?, ?)",
        [(generation_id, i, p.question, p.answer) for i, p in enumerate(pairs)])
    return generation_id


def generate(ctx: StageContext, template: PromptTemplate, image: Image, task: str,
             settings: GenerationConfig, model: str,
             purpose: str = "run") -> GenerationResult | CallOutcome:
    """Generate pairs for one (image, task); a failed call comes back as its CallOutcome.

    `purpose` "lab" marks prompt-lab trials, which never count as the run's data.
    """
    if not image.captions:
        # Nothing to describe: a counted row, not a call that would make things up.
        problems = ("the image has no captions",)
        gid = ctx.store.write_sync(lambda c: insert_generation(
            c, image.image_id, task, template.version, model, None, "parse_failure", "", (),
            problems, purpose))
        ctx.emit(GenerationParsed(gid, image.image_id, task, 0, True, problems))
        return GenerationResult(gid, (), True, problems)
    request = generation_request(template, image, settings, task)
    outcome = make_call(ctx, stage="generate", image_id=image.image_id, task=task, model=model,
                        prompt_version=template.version, request=request,
                        item="" if purpose == "run" else purpose)
    if outcome.result is None:
        return outcome
    result = outcome.result
    text = result.response.text
    request_text = pick_description_request(template, image.image_id) if task == "detail" else ""
    parsed = parse_pairs(text, task, description_request=request_text)
    pairs = parsed.pairs
    problems = tuple(parsed.problems)
    if result.response.finish_reason == "length" and task != "detail":
        problems += ("output was cut at max_tokens",)
    status = "ok" if pairs else "parse_failure"
    ledger = ctx.ledger

    def write(conn: sqlite3.Connection) -> int:
        ledger.finish_ok(conn, result.call_id, result.response, result.latency_ms)
        return insert_generation(conn, image.image_id, task, template.version, model,
                                 result.call_id, status, text, pairs, problems, purpose)

    finished = ledger.finished_event(outcome.info, result.call_id, result.response,
                                     result.latency_ms, result.attempt)
    gid: int = ctx.store.write_sync(write)
    ctx.emit(finished)
    ctx.emit(GenerationParsed(gid, image.image_id, task, len(pairs), not pairs, problems))
    return GenerationResult(gid, pairs, not pairs, problems, outcome)
