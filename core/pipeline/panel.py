"""Judging by one model or a panel: each member in its own pool, scores combined by mean or min."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from visinstruct.core.config import Config, JudgeConfig, ModelConfig
from visinstruct.core.events import PairsJudged
from visinstruct.core.models.calls import CallOutcome, StageContext
from visinstruct.core.pipeline.judge import JudgeResult, judge
from visinstruct.core.pipeline.rows import pair_ids
from visinstruct.core.records import Image, Judgement, Pair
from visinstruct.core.store.database import RowRef, Store, now
from visinstruct.core.store.verdicts import is_kept_score
from visinstruct.core.text.prompts import PromptTemplate


def unjudged_pairs(store: Store, generation_id: int, settings: JudgeConfig,
                   prompt_version: str) -> list[tuple[int, Pair]]:
    """(index, pair) of a generation's pairs that passed the gates and lack this judge's score."""
    return [(row[0], Pair(row[1], row[2])) for row in store.query(
        "SELECT p.idx, p.question, p.answer FROM pairs p WHERE p.generation_id = ? "
        "AND NOT EXISTS (SELECT 1 FROM pair_gates x WHERE x.pair_id = p.id AND x.action = 'drop') "
        "AND NOT EXISTS (SELECT 1 FROM judgements j WHERE j.pair_id = p.id "
        "AND j.prompt_version = ? AND j.model = ?) ORDER BY p.idx",
        (generation_id, prompt_version, settings.identity))]


def passing_pairs(store: Store, generation_id: int) -> list[tuple[int, Pair]]:
    """(index, pair) of a generation's pairs that no quality gate dropped."""
    return [(row[0], Pair(row[1], row[2])) for row in store.query(
        "SELECT p.idx, p.question, p.answer FROM pairs p WHERE p.generation_id = ? "
        "AND NOT EXISTS (SELECT 1 FROM pair_gates x WHERE x.pair_id = p.id AND x.action = 'drop') "
        "ORDER BY p.idx", (generation_id,))]


def combine_scores(scores: Sequence[float | None], how: str) -> float | None:
    """The panel's score: mean or min of its members'; None unless every member gave one."""
    if not scores or any(s is None for s in scores):
        return None
    readable = [float(s) for s in scores if s is not None]
    return min(readable) if how == "min" else round(sum(readable) / len(readable), 2)


def judge_pairs(ctx: StageContext, template: PromptTemplate, image: Image, task: str,
                generation: RowRef | int, targets: Sequence[tuple[int, Pair]],
                settings: JudgeConfig, *, fresh: bool = False,
                member_templates: Mapping[str, PromptTemplate] | None = None,
                pictures: Mapping[str, bytes | None] | None = None,
                ) -> JudgeResult | CallOutcome:
    """Score `targets` ((index, pair) of one generation) by the judge or by every panel member.

    A member whose scores are already stored (a resumed run) is not asked again unless `fresh`.
    `member_templates` gives a member its own template (default `template`), `pictures` the
    picture it is sent (default none): each member by its own vision flag.
    """
    indices = [idx for idx, _ in targets]
    pairs = [pair for _, pair in targets]
    panel = settings.panel
    templates = member_templates or {}
    pictures = pictures or {}
    if len(panel) == 1:
        return judge(ctx, templates.get(panel[0], template), image, task, generation, pairs,
                     settings, panel[0], indices=indices, picture=pictures.get(panel[0]))
    ref = generation if isinstance(generation, RowRef) else RowRef(generation)
    members: list[tuple[Judgement, ...]] = []
    for model in panel:
        own = templates.get(model, template)
        stored = None if fresh else _stored_scores(ctx.store, ref, indices, model, own.version)
        if stored is None:
            result = judge(ctx, own, image, task, ref, pairs, settings, model,
                           indices=indices, announce=False, picture=pictures.get(model))
            if not isinstance(result, JudgeResult):
                return result
            stored = result.judgements
        members.append(stored)
    combined = tuple(
        Judgement(n + 1, combine_scores([m[n].score for m in members], settings.combine),
                  f"{settings.combine} of " + ", ".join(
                      f"{model} {'–' if m[n].score is None else format(m[n].score, 'g')}"
                      for model, m in zip(panel, members, strict=False)))
        for n in range(len(pairs)))
    name, version = settings.identity, template.version

    def write(conn: sqlite3.Connection) -> int:
        ids = pair_ids(conn, ref)
        created = now()
        conn.executemany(
            "INSERT INTO judgements (pair_id, generation_id, score, reason, call_id, "
            "prompt_version, model, created_at) VALUES (?, ?, ?, ?, NULL, ?, ?, ?)",
            [(ids[idx], ref.id, j.score, j.reason, version, name, created)
             for idx, j in zip(indices, combined, strict=False) if idx in ids])
        return int(ref.id or 0)

    kept = sum(is_kept_score(j.score, settings.threshold) for j in combined)
    written = ctx.store.write(write, on_commit=lambda gid: ctx.emit(PairsJudged(
        gid, image.image_id, task, tuple(j.score for j in combined), kept, settings.threshold)))
    return JudgeResult(combined, kept, written)


def _stored_scores(store: Store, ref: RowRef, indices: Sequence[int], model: str,
                   version: str) -> tuple[Judgement, ...] | None:
    """A member's stored scores for these pairs, or None when any is missing."""
    if ref.id is None or not indices:
        return None
    latest: dict[int, tuple[float | None, str]] = {}
    for idx, score, reason in store.query(
            "SELECT p.idx, j.score, j.reason FROM judgements j JOIN pairs p ON p.id = j.pair_id "
            "WHERE p.generation_id = ? AND j.model = ? AND j.prompt_version = ? ORDER BY j.id",
            (ref.id, model, version)):
        latest[int(idx)] = (score, reason or "")
    if any(idx not in latest for idx in indices):
        return None
    return tuple(Judgement(n + 1, *latest[idx]) for n, idx in enumerate(indices))


def self_preference_warning(config: Config) -> str | None:
    """A warning when a judge is the generation model (judges favour their own style), else None."""
    writer = config.generation.model
    same = [name for name in config.judge.panel
            if name == writer or _identity(config.models.get(name)) == _identity(
                config.models.get(writer))]
    if not same:
        return None
    return (f"warning: the judge ({', '.join(same)}) is the generation model ({writer}); "
            "judges tend to score text in their own style higher (self-preference). Set "
            "[judge] model, or a panel in [judge] models, to another model.")


def _identity(model: ModelConfig | None) -> tuple[object, ...] | None:
    """What makes two named models the same model behind different names."""
    if model is None:
        return None
    return (model.backend, model.model_id, model.model, model.endpoints, model.base_url,
            model.base_urls, model.gguf, model.script)
