"""Dataset statistics from the store, ours against the baseline, as figures for the report."""

from __future__ import annotations

import itertools
import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from visinstruct.core.analysis.agreement import JudgeAgreement, stored_judge_agreement
from visinstruct.core.analysis.diversity import Diversity, measure_sides
from visinstruct.core.analysis.sources import SourceView
from visinstruct.core.analysis.versions import VersionDiversity, version_diversity
from visinstruct.core.events import percentile
from visinstruct.core.records import TASKS
from visinstruct.core.store.database import Store
from visinstruct.core.store.pictures import GENERATOR_SAW_SQL, JUDGE_SAW_SQL, saw_picture
from visinstruct.core.store.queries import KEPT_SQL
from visinstruct.core.store.verdicts import BY_GATE, KEPT, dropped_by_sql, judged_sql, verdict_sql
from visinstruct.core.text.synonyms import (
    QUESTION_FAMILIES,
    mentioned_categories,
    question_family,
    question_template,
    words,
)

SEED = 0
ALL = "all"
# ours: kept pairs; generated: every pair of the current generations; baseline: GPT-4's.
DATASETS: tuple[str, ...] = ("ours", "generated", "baseline")
LENGTH_EDGES: tuple[int, ...] = (0, 6, 11, 21, 41, 81, 161, 321)
LENGTH_BINS: tuple[str, ...] = tuple(
    f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(LENGTH_EDGES)) + (f"{LENGTH_EDGES[-1]}+",)
# A judged pair's score, or why it has none that counts (store/verdicts.py's words).
SCORE_BINS: tuple[str, ...] = tuple(str(s) for s in range(1, 11)) + ("unjudged", "gated")
TOP_TEMPLATES = 10

def ratio(part: float, whole: float) -> float | None:
    """part / whole, or None when there is no whole."""
    return part / whole if whole else None


@dataclass(frozen=True)
class Distribution:
    """Word counts: mean, median, 10th and 90th percentile, and counts per LENGTH_BINS."""

    count: int
    mean: float | None
    median: float | None
    p10: float | None
    p90: float | None
    histogram: tuple[int, ...]


@dataclass(frozen=True)
class Turns:
    """Question-answer pairs per conversation."""

    mean: float | None
    median: float | None
    distribution: Mapping[int, int]


@dataclass(frozen=True)
class Template:
    """A normalised question asked about several images."""

    text: str
    images: int
    questions: int


@dataclass(frozen=True)
class Duplicates:
    """Questions whose normalised form is asked about two or more images."""

    questions: int
    duplicated: int
    rate: float | None
    top: tuple[Template, ...]


@dataclass(frozen=True)
class Grounding:
    """CHAIR-style rates: categories named in answers that have no box on the image."""

    answers_checked: int
    answers_skipped: int          # on images with no boxes at all
    images_skipped: int
    mentions: int                 # (answer, category) pairs
    hallucinated: int
    answers_with_mentions: int
    answers_with_hallucination: int
    chair_i: float | None         # hallucinated / mentions
    chair_s: float | None         # answers_with_hallucination / answers_with_mentions
    top_hallucinated: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class SliceStats:
    """One dataset's figures for one task (or all tasks)."""

    conversations: int
    pairs: int
    images: int
    turns: Turns
    question_words: Distribution
    answer_words: Distribution
    question_types: Mapping[str, int]
    diversity: Diversity
    duplicates: Duplicates
    grounding: Grounding


@dataclass(frozen=True)
class VersionStats:
    """Judge outcome of the pairs made with one generation prompt version."""

    version: str
    name: str
    generations: int
    parse_failures: int
    parse_failure_rate: float | None
    pairs: int
    judged: int
    mean_score: float | None
    kept: int
    keep_rate: float | None


@dataclass(frozen=True)
class JudgeStats:
    """Scores of the current pairs (SCORE_BINS) and the outcome per prompt version."""

    threshold: float
    histogram: Mapping[str, int]
    pairs: int
    judged: int
    kept: int
    keep_rate: float | None
    mean_score: float | None
    accepted_by_review: int
    rejected_by_review: int
    versions: tuple[VersionStats, ...]


@dataclass(frozen=True)
class SightGroup:
    """Our pairs by whether their generator and their judge saw the picture."""

    generator_saw: bool
    judge_saw: bool
    pairs: int
    judged: int
    kept: int
    keep_rate: float | None
    mean_score: float | None
    grounding: Grounding          # of every pair of the group (kept or not)


@dataclass(frozen=True)
class Figures:
    """Everything the report shows, per dataset and slice (TASKS and "all")."""

    threshold: float
    seed: int
    images: int
    images_with_boxes: int
    baseline_rows_total: int
    baseline_rows_used: int
    baseline_images: int         # images the baseline side covers (those ours covers)
    baseline_images_total: int   # images the store's baseline has conversations about
    present: Mapping[str, bool]
    datasets: Mapping[str, Mapping[str, SliceStats]]
    judge: JudgeStats
    slices: tuple[str, ...]
    length_bins: tuple[str, ...] = LENGTH_BINS
    question_families: tuple[str, ...] = QUESTION_FAMILIES
    version_diversity: tuple[VersionDiversity, ...] = ()
    judge_agreement: JudgeAgreement | None = None
    sight: tuple[SightGroup, ...] = ()   # empty when no model saw a picture

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (integer keys become strings, as JSON needs)."""
        return json.loads(self.to_json())

    def to_json(self) -> str:
        """The figures as indented JSON (figures.json)."""
        return json.dumps(asdict(self), indent=2, sort_keys=False)


@dataclass(frozen=True)
class _PairFacts:
    question_words: int
    answer_words: int
    family: str
    template: str
    mentions: frozenset[str]


def _facts(question: str, answer: str, gqa: SourceView | None = None) -> _PairFacts:
    mentions = gqa.gqa_mentions(answer) if gqa is not None else mentioned_categories(answer)
    return _PairFacts(len(words(question)), len(words(answer)), question_family(question),
                      question_template(question), mentions)


class _Slice:
    """Accumulates one dataset's conversations for one slice."""

    def __init__(self) -> None:
        self.turns: list[int] = []
        self.images: set[int] = set()
        self.question_words: list[int] = []
        self.answer_words: list[int] = []
        self.families: Counter[str] = Counter()
        self.answers: list[str] = []
        self.questions: list[str] = []
        self.template_images: dict[str, set[int]] = defaultdict(set)
        self.template_questions: Counter[str] = Counter()
        self.grounding: Counter[str] = Counter()
        self.skipped_images: set[int] = set()
        self.hallucinated_categories: Counter[str] = Counter()

    def add(self, image_id: int, pairs: Sequence[tuple[str, str, _PairFacts]],
            boxes: frozenset[str] | None) -> None:
        self.turns.append(len(pairs))
        self.images.add(image_id)
        for question, answer, facts in pairs:
            self.question_words.append(facts.question_words)
            self.answer_words.append(facts.answer_words)
            self.families[facts.family] += 1
            self.answers.append(answer)
            self.questions.append(question)
            self.template_images[facts.template].add(image_id)
            self.template_questions[facts.template] += 1
            if boxes is None:
                self.grounding["skipped"] += 1
                self.skipped_images.add(image_id)
                continue
            wrong = facts.mentions - boxes
            self.grounding["checked"] += 1
            self.grounding["mentions"] += len(facts.mentions)
            self.grounding["hallucinated"] += len(wrong)
            self.grounding["with_mentions"] += bool(facts.mentions)
            self.grounding["with_hallucination"] += bool(wrong)
            self.hallucinated_categories.update(wrong)

    def stats(self, diversity: Diversity) -> SliceStats:
        turns = sorted(self.turns)
        duplicated = sum(n for t, n in self.template_questions.items()
                         if len(self.template_images[t]) >= 2)
        top = sorted((Template(t, len(self.template_images[t]), n)
                      for t, n in self.template_questions.items()
                      if len(self.template_images[t]) >= 2),
                     key=lambda tpl: (-tpl.images, -tpl.questions, tpl.text))[:TOP_TEMPLATES]
        g = self.grounding
        return SliceStats(
            conversations=len(turns), pairs=len(self.answers), images=len(self.images),
            turns=Turns(statistics.fmean(turns) if turns else None,
                        statistics.median(turns) if turns else None,
                        dict(sorted(Counter(turns).items()))),
            question_words=_distribution(self.question_words),
            answer_words=_distribution(self.answer_words),
            question_types={f: self.families.get(f, 0) for f in QUESTION_FAMILIES},
            diversity=diversity,
            duplicates=Duplicates(len(self.answers), duplicated,
                                  ratio(duplicated, len(self.answers)), tuple(top)),
            grounding=Grounding(
                g["checked"], g["skipped"], len(self.skipped_images), g["mentions"],
                g["hallucinated"], g["with_mentions"], g["with_hallucination"],
                ratio(g["hallucinated"], g["mentions"]),
                ratio(g["with_hallucination"], g["with_mentions"]),
                tuple(sorted(self.hallucinated_categories.items(),
                             key=lambda kv: (-kv[1], kv[0]))[:TOP_TEMPLATES])),
        )


def _distribution(values: Iterable[int]) -> Distribution:
    ordered = sorted(values)
    histogram = [0] * len(LENGTH_BINS)
    for value in ordered:
        histogram[sum(1 for edge in LENGTH_EDGES[1:] if value >= edge)] += 1
    return Distribution(len(ordered), statistics.fmean(ordered) if ordered else None,
                        statistics.median(ordered) if ordered else None,
                        percentile(ordered, 0.1), percentile(ordered, 0.9), tuple(histogram))


def _boxes(store: Store) -> dict[int, frozenset[str]]:
    by_image: dict[int, set[str]] = defaultdict(set)
    for image_id, category in store.iter_query(
            "SELECT image_id, category FROM boxes WHERE image_id IN (SELECT id FROM images)"):
        by_image[image_id].add(category)
    return {image_id: frozenset(c) for image_id, c in by_image.items()}


def _conversations(store: Store, threshold: float
                   ) -> Iterable[tuple[str, int, str, list[tuple[str, str, bool]], int]]:
    """(dataset, image, task, [(question, answer, kept)], generation) for our generations, then
    the baseline (generation 0)."""
    current: tuple[int, int, str] | None = None
    pairs: list[tuple[str, str, bool]] = []
    for gen_id, image_id, task, question, answer, kept in store.iter_query(
            f"SELECT generation_id, image_id, task, question, answer, {KEPT_SQL} FROM pair_state "
            "ORDER BY generation_id, idx", (threshold,)):
        if current is not None and current[0] != gen_id:
            yield "generated", current[1], current[2], pairs, current[0]
            pairs = []
        current = (gen_id, image_id, task)
        pairs.append((question, answer, bool(kept)))
    if current is not None:
        yield "generated", current[1], current[2], pairs, current[0]
    # Both sides describe the same images: the baseline only on images ours covers (every
    # image of the store while nothing is generated yet, so the baseline alone still shows).
    covered = ("SELECT image_id FROM generations WHERE purpose = 'run'" if store.scalar(
        "SELECT 1 FROM generations WHERE purpose = 'run' LIMIT 1") else "SELECT id FROM images")
    for image_id, task, raw in store.iter_query(
            "SELECT image_id, task, pairs FROM baseline_conversations "
            f"WHERE image_id IN ({covered}) ORDER BY id"):
        yield "baseline", image_id, task, [(q, a, True) for q, a in json.loads(raw)], 0


def analyze(store: Store, threshold: float, *, seed: int = SEED) -> Figures:
    """Compute every figure of the report from the store, with pairs kept at `threshold`."""
    boxes = _boxes(store)
    view = SourceView(store)
    slices: dict[str, dict[str, _Slice]] = {name: defaultdict(_Slice) for name in DATASETS}
    by_generator, by_judge = saw_picture(store)
    sight_slices: dict[tuple[bool, bool], _Slice] = defaultdict(_Slice)
    for dataset, image_id, task, rows, generation in _conversations(store, threshold):
        gqa = view.is_gqa(image_id)
        facts = [(q, a, kept, _facts(q, a, view if gqa else None)) for q, a, kept in rows]
        if dataset == "generated" and (by_generator or by_judge) and task != "short_answer":
            sight_slices[(generation in by_generator, generation in by_judge)].add(
                image_id, [(q, a, f) for q, a, _k, f in facts], view.present(image_id, boxes))
        targets = [(dataset, [(q, a, f) for q, a, _k, f in facts])]
        if dataset == "generated":
            targets.append(("ours", [(q, a, f) for q, a, k, f in facts if k]))
        for name, pairs in targets:
            if pairs:
                # With both sources, each also gets its own slice ("coco", "gqa").
                slice_keys = (task, ALL, view.source(image_id)) if view.several else (task, ALL)
                for key in slice_keys:
                    slices[name][key].add(image_id, pairs, view.present(image_id, boxes))
    others = sorted({key for by_key in slices.values() for key in by_key} - {*TASKS, ALL})
    keys = (*TASKS, *others, ALL)
    datasets: dict[str, dict[str, SliceStats]] = {name: {} for name in DATASETS}
    for key in keys:
        diversity = measure_sides(
            {name: (slices[name][key].answers, slices[name][key].questions) for name in DATASETS},
            seed=seed, totals={name: sum(slices[name][key].answer_words) for name in DATASETS})
        for name in DATASETS:
            datasets[name][key] = slices[name][key].stats(diversity[name])
    baseline_total = int(store.scalar("SELECT COUNT(*) FROM baseline_conversations") or 0)
    return Figures(
        threshold=threshold, seed=seed,
        images=int(store.scalar("SELECT COUNT(*) FROM images") or 0),
        images_with_boxes=sum(1 for _ in boxes),
        baseline_rows_total=baseline_total,
        baseline_rows_used=datasets["baseline"][ALL].conversations,
        baseline_images=datasets["baseline"][ALL].images,
        baseline_images_total=int(store.scalar(
            "SELECT COUNT(DISTINCT image_id) FROM baseline_conversations") or 0),
        present={name: datasets[name][ALL].pairs > 0 for name in DATASETS},
        datasets=datasets, judge=judge_stats(store, threshold), slices=keys,
        version_diversity=tuple(version_diversity(store, seed=seed)),
        judge_agreement=stored_judge_agreement(store, threshold),
        sight=_sight_groups(store, threshold, sight_slices),
    )


def _sight_groups(store: Store, threshold: float,
                  slices: Mapping[tuple[bool, bool], _Slice]) -> tuple[SightGroup, ...]:
    """Judge outcome and grounding of our pairs by whether generator and judge saw the picture."""
    if not slices:
        return ()
    outcome = {(bool(g), bool(j)): (n, judged, kept, mean) for g, j, n, judged, kept, mean in
               store.query(
        f"SELECT generation_id IN ({GENERATOR_SAW_SQL}), generation_id IN ({JUDGE_SAW_SQL}), "
        f"COUNT(*), SUM({judged_sql()}), SUM({KEPT_SQL}), "
        f"AVG(CASE WHEN {judged_sql()} THEN score END) FROM pair_state "
        "WHERE task != 'short_answer' GROUP BY 1, 2", (threshold,))}
    groups = []
    for key in sorted(slices, reverse=True):
        n, judged, kept, mean = outcome.get(key, (0, 0, 0, None))
        groups.append(SightGroup(key[0], key[1], int(n), int(judged or 0), int(kept or 0),
                                 ratio(int(kept or 0), n), mean,
                                 slices[key].stats(Diversity(0, 0, None, None)).grounding))
    return tuple(groups)


def judge_stats(store: Store, threshold: float) -> JudgeStats:
    """The score histogram of the current pairs, and keep rates per generation prompt version."""
    histogram = dict.fromkeys(SCORE_BINS, 0)
    scores: list[float] = []
    kept = pairs = 0
    # Short answers are the datasets' own answers: no judge ever scores them. A pair a gate
    # dropped is "gated" whatever old score it has; one with no readable score "unjudged".
    for score, verdict, dropped_by, judged in store.iter_query(
            f"SELECT score, {verdict_sql(':threshold')}, {dropped_by_sql(':threshold')}, "
            f"{judged_sql()} FROM pair_state WHERE task != 'short_answer'",
            {"threshold": threshold}):
        pairs += 1
        kept += verdict == KEPT
        if not judged:
            histogram["gated" if dropped_by == BY_GATE else "unjudged"] += 1
            continue
        scores.append(float(score))
        histogram[str(min(10, max(1, int(score))))] += 1
    decisions = dict(store.query(
        "SELECT decision, COUNT(*) FROM pair_state WHERE decision IS NOT NULL GROUP BY decision"))
    names = {row[0]: row[1] for row in store.query("SELECT version, name FROM prompts")}
    made = {row[0]: (row[1], row[2]) for row in store.query(
        "SELECT prompt_version, COUNT(*), SUM(status = 'parse_failure') FROM generations "
        "WHERE purpose = 'run' GROUP BY prompt_version")}
    # Every generation made with a version counts here, including ones later replaced.
    outcome = {row[0]: row[1:] for row in store.query(
        f"SELECT prompt_version, COUNT(*), SUM({judged_sql()}), "
        f"AVG(CASE WHEN {judged_sql()} THEN score END), SUM({KEPT_SQL}) FROM ("
        "SELECT g.prompt_version, g.task AS task, j.score AS score, d.decision AS decision, "
        "x.rule AS gate_rule "
        "FROM pairs p "
        "JOIN generations g ON g.id = p.generation_id AND g.purpose = 'run' AND g.status = 'ok' "
        "LEFT JOIN judgements j ON j.id = (SELECT MAX(id) FROM judgements WHERE pair_id = p.id) "
        "LEFT JOIN reviews d ON d.id = (SELECT MAX(id) FROM reviews WHERE pair_id = p.id "
        "AND decision IN ('accept', 'reject')) "
        "LEFT JOIN pair_gates x ON x.id = (SELECT MIN(id) FROM pair_gates WHERE pair_id = p.id "
        "AND action = 'drop')) GROUP BY prompt_version", (threshold,))}
    versions = []
    for version in sorted(made, key=lambda v: (names.get(v, ""), v)):
        generations, failures = made[version]
        n_pairs, judged, mean, n_kept = outcome.get(version, (0, 0, None, 0))
        versions.append(VersionStats(
            version, names.get(version, ""), generations, int(failures or 0),
            ratio(int(failures or 0), generations), n_pairs, judged, mean, int(n_kept or 0),
            ratio(int(n_kept or 0), n_pairs)))
    return JudgeStats(threshold, histogram, pairs, len(scores), kept, ratio(kept, pairs),
                      statistics.fmean(scores) if scores else None,
                      int(decisions.get("accept", 0)), int(decisions.get("reject", 0)),
                      tuple(versions))
