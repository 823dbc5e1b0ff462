"""The short_answer task: mix665k's VQA-style records made from an image's facts, with no model."""

from __future__ import annotations

import sqlite3
from concurrent.futures import Future
from typing import Any

from visinstruct.core.events import GenerationParsed
from visinstruct.core.models.calls import StageContext
from visinstruct.core.pipeline.generate import insert_generation
from visinstruct.core.records import FACTS_MODEL, Image, Pair
from visinstruct.core.text.prompts import PromptTemplate


def short_answer_pairs(image: Image, formatting: str) -> tuple[Pair, ...]:
    """The image's facts in file order; the formatting prompt follows the first question only.

    This is how LLaVA-1.5's mix665k writes VQAv2 and GQA: one conversation per image, and
    the instruction to answer in a word or phrase is given once, at the start.
    """
    pairs: list[Pair] = []
    for fact in image.facts:
        question = f"{fact.question}\n{formatting}" if not pairs and formatting else fact.question
        pairs.append(Pair(question, fact.answer))
    return tuple(pairs)


def write_short_answers(ctx: StageContext, template: PromptTemplate, image: Image,
                        task: str) -> Future[Any]:
    """Queue one short-answer conversation for `image` (a skipped row when it has no facts).

    Returns the write, which resolves once it is committed.
    """
    pairs = short_answer_pairs(image, template.instruction)
    status = "ok" if pairs else "skipped"
    problems: tuple[str, ...] = () if pairs else ("the image has no facts",)

    def write(conn: sqlite3.Connection) -> int:
        return insert_generation(conn, image.image_id, task, template.version, FACTS_MODEL, None,
                                 status, "", pairs, problems)

    return ctx.store.write(write, on_commit=lambda gid: ctx.emit(
        GenerationParsed(gid, image.image_id, task, len(pairs), False, problems)))
