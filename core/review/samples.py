"""Human review: paged, filtered sample lists, one sample's detail, decisions, edits, re-judging."""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from visinstruct.core.config import Config
from visinstruct.core.errors import BackendError, InputError
from visinstruct.core.events import Emit, ignore
from visinstruct.core.lab.trials import call_context
from visinstruct.core.models.pictures import picture_path
from visinstruct.core.pipeline.backlog import Backlog
from visinstruct.core.pipeline.judge import JudgeResult, stored_pairs
from visinstruct.core.pipeline.panel import judge_pairs, passing_pairs
from visinstruct.core.pipeline.seeing import Sight
from visinstruct.core.records import TASKS, Image, Pair

# Decisions live in `decisions`; the names stay importable from here for the screens.
from visinstruct.core.review.decisions import DECISIONS as DECISIONS
from visinstruct.core.review.decisions import accept_pair as accept_pair
from visinstruct.core.review.decisions import decide_pair as decide_pair
from visinstruct.core.review.decisions import edit_pair as edit_pair
from visinstruct.core.review.decisions import reject_pair as reject_pair
from visinstruct.core.store.database import Store
from visinstruct.core.store.interrupt import ReadCancelled, interruptible
from visinstruct.core.store.pictures import generation_saw
from visinstruct.core.store.queries import baseline_pairs, load_images
from visinstruct.core.store.search import MATCHING_GENERATIONS_SQL, catch_up, match_query
from visinstruct.core.store.verdicts import (
    BY_GATE,
    DROPPED,
    KEPT,
    UNJUDGED,
    PairColumns,
    dropped_by_sql,
    judged_sql,
    verdict_sql,
)
from visinstruct.core.text.gates import RULES, missing_reason

STATES: tuple[str, ...] = ("kept", "dropped", "unjudged", "gated", "flagged", "parse_failure",
                           "evaluated", "reviewed")

# The sample shown for an (image, task): its current ok generation, else its latest failure.
_SAMPLE_GENERATION = """
    g.purpose = 'run' AND g.id = (
        SELECT g2.id FROM generations g2
        WHERE g2.image_id = g.image_id AND g2.task = g.task AND g2.purpose = 'run'
        ORDER BY g2.status = 'ok' DESC, g2.id DESC LIMIT 1)
"""
# Per pair: its latest judgement's score, its latest accept/reject decision, whether a
# quality gate dropped it, and whether a gate flagged it.
_PAIR_FACTS = """
    SELECT (SELECT j.score FROM judgements j WHERE j.pair_id = p.id
            ORDER BY j.id DESC LIMIT 1) AS s,
           (SELECT r.decision FROM reviews r WHERE r.pair_id = p.id
            AND r.decision IN ('accept', 'reject') ORDER BY r.id DESC LIMIT 1) AS d,
           EXISTS (SELECT 1 FROM pair_gates x WHERE x.pair_id = p.id AND x.action = 'drop') AS x,
           EXISTS (SELECT 1 FROM pair_gates x WHERE x.pair_id = p.id AND x.action = 'flag') AS f,
           g.task AS t
    FROM pairs p WHERE p.generation_id = g.id LIMIT -1
"""
_FACT_COLUMNS = PairColumns(score="s", decision="d", gated="x", task="t")
# One pass over a sample's pairs, by the verdict rules of store/verdicts.py: [pairs, mean
# judged score, kept, judged, dropped, unjudged, dropped by a gate, reviewed, flagged], as JSON
# so it is computed once (the LIMIT -1 above stops SQLite from flattening, which would repeat
# the lookups per use).
_STATS = f"""
    (SELECT json_array(COUNT(*), AVG(CASE WHEN jd THEN s END),
            COALESCE(SUM(v = '{KEPT}'), 0), COALESCE(SUM(jd), 0),
            COALESCE(SUM(v = '{DROPPED}'), 0), COALESCE(SUM(v = '{UNJUDGED}'), 0),
            COALESCE(SUM(b = '{BY_GATE}'), 0), COUNT(d), COALESCE(SUM(f), 0))
     FROM (SELECT s, d, f, {verdict_sql(':threshold', _FACT_COLUMNS)} AS v,
                  {dropped_by_sql(':threshold', _FACT_COLUMNS)} AS b,
                  {judged_sql(_FACT_COLUMNS)} AS jd
           FROM ({_PAIR_FACTS})))
"""
# A sample is listed under a verdict when one of its pairs has it.
_STATE_SQL: dict[str, str] = {
    "kept": "status = 'ok' AND json_extract(stats, '$[2]') > 0",
    "dropped": "status = 'ok' AND json_extract(stats, '$[4]') > 0",
    "unjudged": "status = 'ok' AND json_extract(stats, '$[5]') > 0",
    "gated": "status = 'ok' AND json_extract(stats, '$[6]') > 0",   # dropped by a gate
    "flagged": "status = 'ok' AND json_extract(stats, '$[8]') > 0",
    "parse_failure": "status = 'parse_failure'",
    "evaluated": "evaluated",
    "reviewed": "json_extract(stats, '$[7]') > 0",   # a person accepted or rejected a pair
}


@dataclass(frozen=True)
class SampleFilter:
    """What the review list shows; None means any."""

    task: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    state: str | None = None
    prompt_version: str | None = None
    rule: str | None = None        # a quality gate rule: samples with a pair it dropped or flagged
    text: str | None = None        # words a pair's question or answer holds (the `/` search)


@dataclass(frozen=True)
class SampleRow:
    """One (image, task) in the review list."""

    generation_id: int
    image_id: int
    task: str
    status: str
    prompt_version: str
    pairs: int
    mean_score: float | None
    kept: int
    scored: int              # judged pairs (store/verdicts.py)
    evaluated: bool
    gated: int = 0           # pairs dropped by a gate
    reviewed: int = 0        # pairs a person accepted or rejected
    dropped: int = 0         # pairs dropped by a gate, the judge or a person
    unjudged: int = 0
    flagged: int = 0

    @property
    def key(self) -> tuple[int, str]:
        """The keyset position of this row: the list is ordered by (image id, task)."""
        return (self.image_id, self.task)

    @property
    def state(self) -> str:
        """parse_failure; else kept (a pair kept), dropped (pairs dropped, none kept), unjudged."""
        if self.status != "ok":
            return "parse_failure"
        if self.kept:
            return "kept"
        return "dropped" if self.dropped else "unjudged"


@dataclass(frozen=True)
class SamplePage:
    """One page of the list and whether another follows it."""

    rows: tuple[SampleRow, ...]
    has_more: bool


@dataclass(frozen=True)
class PairView:
    """One of our pairs as review shows it: current text, the original, score and decision."""

    pair_id: int
    idx: int
    question: str
    answer: str
    original_question: str
    original_answer: str
    score: float | None
    reason: str
    decision: str | None
    edited: bool
    kept: bool
    gate_rule: str | None = None                    # the gate that dropped it, if one did
    gate_reason: str = ""
    flags: tuple[tuple[str, str], ...] = ()         # (rule, reason) of gates that only flagged it
    verdict: str = ""                               # kept | dropped | unjudged (store/verdicts.py)
    # Why the judge's reason says nothing ("", "...", "N/A"), when it scored the pair; else ''.
    reason_missing: str = ""


@dataclass(frozen=True)
class VerdictView:
    """One evaluation row: which side was shown first and the scores mapped to each side."""

    mode: str
    item: int
    shown_first: str
    ours_score: float | None
    baseline_score: float | None
    parsed: bool
    rationale: str
    model: str


@dataclass(frozen=True)
class SampleDetail:
    """Everything the detail pane shows for one (image, task)."""

    image: Image
    task: str
    tasks: tuple[str, ...]
    generation_id: int | None
    status: str
    prompt_version: str
    model: str
    raw: str
    problems: tuple[str, ...]
    pairs: tuple[PairView, ...]
    baseline: tuple[Pair, ...]
    verdicts: tuple[VerdictView, ...]
    generator_saw: bool = False     # the call that wrote these pairs carried the picture
    judge_saw: bool = False         # a judge that scored them was shown the picture


def _where(filters: SampleFilter) -> tuple[list[str], list[str], dict[str, object]]:
    """Conditions on the generation row, conditions on the computed columns, and parameters."""
    inner = [_SAMPLE_GENERATION]
    outer: list[str] = []
    params: dict[str, object] = {}
    if filters.task:
        # Unary plus: filter on the row, keep walking the (image_id, task) index in order.
        inner.append("+g.task = :task")
        params["task"] = filters.task
    if filters.prompt_version:
        inner.append("g.prompt_version = :version")
        params["version"] = filters.prompt_version
    if filters.rule:
        if filters.rule not in RULES:
            raise InputError(f"unknown gate rule {filters.rule!r}; one of {', '.join(RULES)}")
        inner.append("EXISTS (SELECT 1 FROM pairs gp JOIN pair_gates gx ON gx.pair_id = gp.id "
                     "WHERE gp.generation_id = g.id AND gx.rule = :rule)")
        params["rule"] = filters.rule
    if filters.min_score is not None:
        outer.append("json_extract(stats, '$[1]') >= :min_score")
        params["min_score"] = filters.min_score
    if filters.max_score is not None:
        outer.append("json_extract(stats, '$[1]') <= :max_score")
        params["max_score"] = filters.max_score
    query = match_query(filters.text or "")
    if query is not None:
        inner.append(f"g.id IN ({MATCHING_GENERATIONS_SQL})")
        params["text"] = query
    if filters.state:
        if filters.state not in _STATE_SQL:
            raise InputError(f"unknown review state {filters.state!r}; one of {', '.join(STATES)}")
        outer.append(_STATE_SQL[filters.state])
    return inner, outer, params


def _sample_sql(filters: SampleFilter, threshold: float, after: tuple[int, str] | None,
                image_id: int | None = None) -> tuple[str, dict[str, object]]:
    inner, outer, params = _where(filters)
    params["threshold"] = threshold
    if image_id is not None:
        inner.append("g.image_id = :image")
        params["image"] = image_id
    if after is not None:
        inner.append("(g.image_id, g.task) > (:after_image, :after_task)")
        params["after_image"], params["after_task"] = after
    # LIMIT -1 keeps SQLite from flattening the subquery, so each row's stats run once.
    sql = f"""
        SELECT * FROM (
            SELECT g.id AS generation_id, g.image_id, g.task, g.status, g.prompt_version,
                   {_STATS} AS stats,
                   EXISTS (SELECT 1 FROM evaluations e
                           WHERE e.image_id = g.image_id AND e.task = g.task) AS evaluated
            FROM generations g
            WHERE {' AND '.join(inner)}
            ORDER BY g.image_id, g.task LIMIT -1)
        {'WHERE ' + ' AND '.join(outer) if outer else ''}
    """
    return sql, params


def sample_page(store: Store, filters: SampleFilter, threshold: float, *,
                after: tuple[int, str] | None = None, limit: int = 50,
                cancel: threading.Event | None = None) -> SamplePage:
    """The `limit` samples after keyset position `after` that pass `filters`.

    A rare state or a narrow score range may scan far; `cancel` stops it (ReadCancelled).
    """
    sql, params = _sample_sql(filters, threshold, after)
    if "text" in params:
        catch_up(store)
    with interruptible(store, cancel):
        rows = store.query(sql + " LIMIT :limit", {**params, "limit": limit + 1})
    samples = tuple(_row(r) for r in rows[:limit])
    return SamplePage(samples, len(rows) > limit)


def sample_row(store: Store, image_id: int, task: str, threshold: float) -> SampleRow | None:
    """One sample's list row as it is now (after a review action), filters aside."""
    sql, params = _sample_sql(SampleFilter(task=task), threshold, None, image_id)
    rows = store.query(sql, params)
    return _row(rows[0]) if rows else None


def count_samples(store: Store, filters: SampleFilter, threshold: float,
                  cancel: threading.Event | None = None) -> int | None:
    """How many samples pass `filters`, or None when `cancel` was set before it finished.

    Filters on scores or states look at every pair, seconds on a big store: callers count
    after showing the page, and cancel a count the user no longer needs.
    """
    if filters == SampleFilter(task=filters.task):
        # Nothing but a task: count distinct (image, task) on the index, no per-pair work.
        sql = ("SELECT COUNT(*) FROM (SELECT DISTINCT image_id, task FROM generations "
               "WHERE purpose = 'run' AND (:task IS NULL OR task = :task))")
        named: dict[str, object] = {"task": filters.task}
    else:
        inner, named = _sample_sql(filters, threshold, None)
        sql = f"SELECT COUNT(*) FROM ({inner})"
    try:
        with interruptible(store, cancel):
            return int(store.scalar(sql, named) or 0)
    except ReadCancelled:
        return None


def _row(row: sqlite3.Row) -> SampleRow:
    (pairs, mean, kept, judged, dropped, unjudged, gated, reviewed,
     flagged) = json.loads(row["stats"])
    return SampleRow(row["generation_id"], row["image_id"], row["task"], row["status"],
                     row["prompt_version"], int(pairs), None if mean is None else float(mean),
                     int(kept), int(judged), bool(row["evaluated"]), int(gated), int(reviewed),
                     int(dropped), int(unjudged), int(flagged))


def prompt_versions_in_use(store: Store) -> list[tuple[str, str]]:
    """(version, task) of every stored generation prompt, newest first, for the version filter."""
    marks = ",".join("?" * len(TASKS))
    return [(r[0], r[1]) for r in store.query(
        f"SELECT version, task FROM prompts WHERE task IN ({marks}) ORDER BY created_at DESC",
        TASKS)]


def sample_detail(store: Store, image_id: int, task: str | None,
                  threshold: float) -> SampleDetail | None:
    """One image's sample for `task` (its first sample's task when None); None if no such image."""
    images = load_images(store, [image_id])
    if image_id not in images:
        return None
    samples = {r["task"]: r for r in store.query(
        f"SELECT g.id, g.task, g.status, g.prompt_version, g.model, g.raw, g.problems "
        f"FROM generations g WHERE g.image_id = :image AND {_SAMPLE_GENERATION}",
        {"image": image_id})}
    tasks = tuple(t for t in TASKS if t in samples) + tuple(
        sorted(t for t in samples if t not in TASKS))
    if task is None:
        task = tasks[0] if tasks else TASKS[0]
    sample = samples.get(task)
    baseline = tuple(p for _, pairs in baseline_pairs(store, image_id, task) for p in pairs)
    verdicts = tuple(VerdictView(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6] or "", r[7] or "")
                     for r in store.query(
        "SELECT mode, item, shown_first, ours_score, baseline_score, parsed, rationale, model "
        "FROM evaluations WHERE image_id = ? AND task = ? ORDER BY item, id", (image_id, task)))
    if sample is None:
        return SampleDetail(images[image_id], task, tasks, None, "none", "", "", "", (), (),
                            baseline, verdicts)
    generator_saw, judge_saw = generation_saw(store, sample["id"])
    return SampleDetail(images[image_id], task, tasks, sample["id"], sample["status"],
                        sample["prompt_version"], sample["model"], sample["raw"] or "",
                        tuple(json.loads(sample["problems"] or "[]")),
                        pair_views(store, sample["id"], threshold), baseline, verdicts,
                        generator_saw, judge_saw)


def pair_views(store: Store, generation_id: int, threshold: float) -> tuple[PairView, ...]:
    """The pairs of a generation with their latest score, decision and edit."""
    rows = store.query(
        f"SELECT id, idx, question, answer, s, reason, d, edit, gates, "
        f"{verdict_sql(':threshold', _FACT_COLUMNS)} FROM ("
        "SELECT p.id, p.idx, p.question, p.answer, "
        "(SELECT score FROM judgements WHERE pair_id = p.id ORDER BY id DESC LIMIT 1) AS s, "
        "(SELECT reason FROM judgements WHERE pair_id = p.id ORDER BY id DESC LIMIT 1) AS reason, "
        "(SELECT decision FROM reviews WHERE pair_id = p.id AND decision IN ('accept', 'reject') "
        " ORDER BY id DESC LIMIT 1) AS d, "
        "(SELECT json_array(question, answer) FROM reviews WHERE pair_id = p.id "
        " AND decision = 'edit' ORDER BY id DESC LIMIT 1) AS edit, "
        "(SELECT json_group_array(json_array(rule, action, reason)) FROM pair_gates "
        " WHERE pair_id = p.id) AS gates, "
        "EXISTS (SELECT 1 FROM pair_gates x WHERE x.pair_id = p.id AND x.action = 'drop') AS x, "
        "(SELECT task FROM generations WHERE id = p.generation_id) AS t "
        "FROM pairs p WHERE p.generation_id = :generation LIMIT -1) ORDER BY idx",
        {"generation": generation_id, "threshold": threshold})
    views = []
    for pair_id, idx, question, answer, score, reason, decision, edit, gates, verdict in rows:
        current = json.loads(edit) if edit else (question, answer)
        gate_verdicts = json.loads(gates or "[]")
        drop = next(((rule, why) for rule, action, why in gate_verdicts if action == "drop"), None)
        flags = tuple((rule, why) for rule, action, why in gate_verdicts if action != "drop")
        views.append(PairView(pair_id, idx, current[0], current[1], question, answer, score,
                              reason or "", decision, edit is not None, verdict == KEPT,
                              drop[0] if drop else None, drop[1] if drop else "", flags, verdict,
                              missing_reason(reason or "") if score is not None else ""))
    return tuple(views)


def image_file(config: Config, image: Image) -> Path | None:
    """The picture on disk when [source].images_dir (gqa_images_dir for GQA) has it."""
    path = picture_path(config.source, image)
    return path if path is not None and path.is_file() else None


def rejudge(config: Config, store: Store, generation_id: int, emit: Emit = ignore,
            cancel: threading.Event | None = None) -> JudgeResult:
    """Judge one generation again with the active judge prompt; the new scores become current."""
    row = store.reader().execute(
        "SELECT image_id, task, status FROM generations WHERE id = ?", (generation_id,)).fetchone()
    if row is None:
        raise InputError(f"generation {generation_id} is not in {store.path}; "
                         "refresh the review list")
    image_id, task, status = row
    if status != "ok" or not stored_pairs(store, generation_id):
        raise InputError(f"generation {generation_id} (image {image_id}, {task}) has no pairs to "
                         "judge: its output could not be parsed")
    pairs = passing_pairs(store, generation_id)
    if not pairs:
        raise InputError(f"every pair of image {image_id} ({task}) was stopped by a quality gate; "
                         "accept one to restore it")
    image = load_images(store, [image_id])[image_id]
    # The run's judge templates (vision versions for judges shown the picture) and pictures.
    backlog = Backlog.load(config, store)
    sight = Sight(config)
    problem = sight.problem(image, generating=False, judging=True)
    if problem is not None:
        raise InputError(f"the judge is shown pictures, and image {image_id}'s cannot be sent: "
                         f"{problem}")
    with call_context(config, store, list(config.judge.panel), emit, cancel) as ctx:
        result = judge_pairs(ctx, backlog.judge_template, image, task, generation_id, pairs,
                             config.judge, fresh=True, member_templates=backlog.member_templates,
                             pictures={name: sight.picture(name, image)
                                       for name in config.judge.panel})
        if isinstance(result, JudgeResult) and result.written is not None:
            result.written.result()
    store.flush()  # the ledger's rows too: callers read the store right after
    if isinstance(result, JudgeResult):
        return result
    if result.cancelled:
        raise BackendError("re-judging was cancelled before the call was sent")
    error = result.error
    raise BackendError(f"re-judging image {image_id} ({task}) failed: {error}",
                       kind=error.kind if error else "permanent",
                       error_class=error.error_class if error else "")
