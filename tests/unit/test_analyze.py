"""The analysis figures against numbers worked out by hand on a tiny store."""

from __future__ import annotations

import json
import sqlite3
from fractions import Fraction
from pathlib import Path

import pytest

from visinstruct.core.analysis.diversity import distinct_n
from visinstruct.core.analysis.figures import ALL, Figures, analyze, percentile
from visinstruct.core.analysis.report import write_report
from visinstruct.core.store.database import Store
from visinstruct.core.text.synonyms import (
    COCO_CATEGORIES,
    mentioned_categories,
    plural,
    question_family,
    question_template,
)

# Image 1 shows a person and a dog, image 2 a cat on a couch, image 3 has no boxes at all.
BOXES = {1: ("person", "person", "dog"), 2: ("cat", "couch"), 3: ()}

# (generation id, image, task, prompt version, status, purpose, pairs as (question, answer,
# judge score or None, review decision or None)). Threshold 7.
GENERATIONS = [
    (1, 1, "conversation", "v0", "ok", "run", [   # superseded by generation 2
        ("What is this?", "A dog.", 9, None)]),
    (2, 1, "conversation", "v1", "ok", "run", [
        ("What is the dog doing?", "The dog is sitting next to a man.", 8, None),
        ("How many cats are there?", "There are two cats on the couch.", 5, None),
        ("Is the man happy?", "Yes, he is smiling.", 7.5, None)]),
    (3, 2, "conversation", "v1", "ok", "run", [
        ("What is the dog doing?", "Dog and cat on sofa.", None, "accept"),
        ("Where is the cat?", "The cat lies on the couch.", 10, "reject")]),
    (4, 2, "detail", "v2", "ok", "run", [
        ("Describe the image.", "A cat and a laptop on a couch.", 7, None)]),
    (5, 3, "detail", "v2", "ok", "run", [
        ("Describe the image in detail.", "A red car parked on the street.", 6, None)]),
    (6, 3, "conversation", "v1", "parse_failure", "run", []),
    (7, 1, "complex_reasoning", "v3", "ok", "run", [
        ("Why might the dog bark?", "It may want to play outside.", 9, None)]),
    (8, 2, "conversation", "v1", "ok", "lab", [     # a prompt-lab trial: never counted
        ("What is here?", "A giraffe and a zebra.", 10, None)]),
]

BASELINE = [
    (1, "conversation", [
        ["What animal is in the picture?", "A dog is in the picture with a person."],
        ["Why is the dog outside?", "The dog wants to play with a frisbee."]]),
    (2, "detail", [["Describe the image in detail.", "A cat rests on a couch near remotes."]]),
    (3, "complex_reasoning", [
        ["What might the driver do next?", "The driver might park the car."]]),
    (99, "conversation", [["Is this image in the store?", "No, so it is left out."]]),
]


def build_hand_store(path: Path) -> Store:
    """The store above, written row by row."""
    store = Store(path)

    def fill(conn: sqlite3.Connection) -> None:
        for image_id, categories in BOXES.items():
            conn.execute("INSERT INTO images (id, file_name, width, height) "
                         "VALUES (?, ?, 640, 480)", (image_id, f"{image_id:012d}.jpg"))
            conn.execute("INSERT INTO captions (image_id, idx, text) VALUES (?, 0, 'a scene')",
                         (image_id,))
            for idx, category in enumerate(categories):
                conn.execute("INSERT INTO boxes (image_id, idx, category, x1, y1, x2, y2) "
                             "VALUES (?, ?, ?, 0, 0, 0.5, 0.5)", (image_id, idx, category))
        conn.execute("INSERT INTO prompts VALUES ('v1', 'conversation', 'conversation', 't', 0)")
        conn.execute("INSERT INTO prompts VALUES ('v2', 'detail', 'detail', 't', 0)")
        for gen_id, image_id, task, version, status, purpose, pairs in GENERATIONS:
            conn.execute("INSERT INTO generations (id, image_id, task, prompt_version, model, "
                         "status, purpose, created_at) VALUES (?, ?, ?, ?, 'm', ?, ?, 0)",
                         (gen_id, image_id, task, version, status, purpose))
            for idx, (question, answer, score, decision) in enumerate(pairs):
                pair_id = conn.execute(
                    "INSERT INTO pairs (generation_id, idx, question, answer) VALUES (?, ?, ?, ?)",
                    (gen_id, idx, question, answer)).lastrowid
                # An older judgement first: only the latest one counts.
                for value in (1, score):
                    conn.execute("INSERT INTO judgements (pair_id, generation_id, score, "
                                 "prompt_version, model, created_at) VALUES (?, ?, ?, 'j', 'm', 0)",
                                 (pair_id, gen_id, value))
                if decision:
                    conn.execute("INSERT INTO reviews (pair_id, decision, created_at) "
                                 "VALUES (?, ?, 0)", (pair_id, decision))
        for row_id, (image_id, task, pairs) in enumerate(BASELINE):
            conn.execute("INSERT INTO baseline_conversations (image_id, task, record_id, pairs) "
                         "VALUES (?, ?, ?, ?)", (image_id, task, f"r{row_id}", json.dumps(pairs)))

    store.write_sync(fill)
    return store


@pytest.fixture
def figures(tmp_path: Path) -> Figures:
    store = build_hand_store(tmp_path / "hand.db")
    try:
        return analyze(store, 7)
    finally:
        store.close()


def close(value: float | None, expected: Fraction | float) -> bool:
    return value is not None and abs(value - float(expected)) < 1e-9


def test_counts_turns_and_scope(figures: Figures) -> None:
    ours, generated, baseline = (figures.datasets[n] for n in ("ours", "generated", "baseline"))
    assert (figures.images, figures.images_with_boxes) == (3, 2)
    # The baseline row about image 99 is not about an image in the store.
    assert (figures.baseline_rows_total, figures.baseline_rows_used) == (4, 3)
    assert [(ours[k].conversations, ours[k].pairs, ours[k].images)
            for k in ("conversation", "detail", "complex_reasoning", ALL)] == [
        (2, 3, 2), (1, 1, 1), (1, 1, 1), (4, 5, 2)]
    assert [(generated[k].conversations, generated[k].pairs)
            for k in ("conversation", "detail", "complex_reasoning", ALL)] == [
        (2, 5), (2, 2), (1, 1), (5, 8)]
    assert [(baseline[k].conversations, baseline[k].pairs)
            for k in ("conversation", "detail", "complex_reasoning", ALL)] == [
        (1, 2), (1, 1), (1, 1), (3, 4)]
    assert ours[ALL].turns.distribution == {1: 3, 2: 1}
    assert (ours[ALL].turns.mean, ours[ALL].turns.median) == (1.25, 1)
    assert (ours["conversation"].turns.mean, ours["conversation"].turns.median) == (1.5, 1.5)
    assert close(baseline[ALL].turns.mean, Fraction(4, 3))
    assert baseline[ALL].turns.median == 1
    assert figures.present == {"ours": True, "generated": True, "baseline": True}


def test_lengths_in_words(figures: Figures) -> None:
    ours, baseline = figures.datasets["ours"], figures.datasets["baseline"]
    # Ours questions 5, 4, 5 | 3 | 5 words; answers 8, 4, 5 | 8 | 6.
    q = ours[ALL].question_words
    assert (q.count, q.mean, q.median) == (5, 4.4, 5)
    assert close(q.p10, 3.4) and close(q.p90, 5)
    a = ours[ALL].answer_words
    assert (a.count, a.mean, a.median) == (5, 6.2, 6)
    assert close(a.p10, 4.4) and close(a.p90, 8)
    assert a.histogram == (2, 3, 0, 0, 0, 0, 0, 0)
    assert close(ours["conversation"].answer_words.mean, Fraction(17, 3))
    # Baseline answers 9, 8 | 8 | 6 words; questions 6, 5 | 5 | 6.
    assert (baseline[ALL].answer_words.mean, baseline[ALL].answer_words.median) == (7.75, 8)
    assert baseline["conversation"].answer_words.mean == 8.5
    assert baseline[ALL].question_words.mean == 5.5


def test_question_types(figures: Figures) -> None:
    ours = figures.datasets["ours"][ALL].question_types
    assert {k: v for k, v in ours.items() if v} == {"what": 2, "why": 1, "yes/no": 1, "describe": 1}
    baseline = figures.datasets["baseline"][ALL].question_types
    assert {k: v for k, v in baseline.items() if v} == {"what": 2, "why": 1, "describe": 1}
    generated = figures.datasets["generated"][ALL].question_types
    assert (generated["how many"], generated["where"], generated["describe"]) == (1, 1, 2)


def test_distinct_on_equal_samples(figures: Figures) -> None:
    ours, baseline = figures.datasets["ours"], figures.datasets["baseline"]
    # Both datasets have 17 answer words in conversations, 8 in detail, 6 in complex, 31 in all.
    expected = {
        "conversation": (17, Fraction(15, 17), 1, Fraction(12, 17), Fraction(14, 15)),
        "detail": (8, Fraction(6, 8), 1, Fraction(7, 8), 1),
        "complex_reasoning": (6, Fraction(6, 6), 1, Fraction(5, 6), 1),
        ALL: (31, Fraction(22, 31), 1, Fraction(22, 31), Fraction(26, 27)),
    }
    for key, (sample, ours_1, ours_2, base_1, base_2) in expected.items():
        assert ours[key].diversity.sample_tokens == sample
        assert baseline[key].diversity.sample_tokens == sample
        assert close(ours[key].diversity.distinct_1, ours_1), key
        assert close(ours[key].diversity.distinct_2, ours_2), key
        assert close(baseline[key].diversity.distinct_1, base_1), key
        assert close(baseline[key].diversity.distinct_2, base_2), key
    # All generated answers hold 51 words; they are cut to the same 31-word sample.
    assert figures.datasets["generated"][ALL].diversity.total_tokens == 51
    assert figures.datasets["generated"][ALL].diversity.sample_tokens == 31


def test_near_duplicate_questions(figures: Figures) -> None:
    ours = figures.datasets["ours"]
    assert (ours[ALL].duplicates.duplicated, ours[ALL].duplicates.questions) == (2, 5)
    assert ours[ALL].duplicates.rate == 0.4
    assert [(t.text, t.images, t.questions) for t in ours[ALL].duplicates.top] == [
        ("what is the dog doing", 2, 2)]
    assert close(ours["conversation"].duplicates.rate, Fraction(2, 3))
    assert figures.datasets["baseline"][ALL].duplicates.rate == 0


def test_grounding_chair_rates(figures: Figures) -> None:
    ours = figures.datasets["ours"]
    g = ours[ALL].grounding
    # "dog" on image 2 and "laptop" on image 2 have no box: 2 of 8 mentions, 2 of 3 answers.
    assert (g.answers_checked, g.answers_skipped, g.mentions, g.hallucinated) == (5, 0, 8, 2)
    assert (g.answers_with_mentions, g.answers_with_hallucination) == (3, 2)
    assert g.chair_i == 0.25 and close(g.chair_s, Fraction(2, 3))
    assert g.top_hallucinated == (("dog", 1), ("laptop", 1))
    conversation = ours["conversation"].grounding
    assert (conversation.chair_i, conversation.chair_s) == (0.2, 0.5)
    assert close(ours["detail"].grounding.chair_i, Fraction(1, 3))
    assert ours["detail"].grounding.chair_s == 1
    assert ours["complex_reasoning"].grounding.chair_i is None
    generated = figures.datasets["generated"][ALL].grounding
    assert (generated.mentions, generated.hallucinated, generated.answers_skipped,
            generated.images_skipped) == (12, 4, 1, 1)
    assert close(generated.chair_i, Fraction(1, 3)) and generated.chair_s == 0.6
    baseline = figures.datasets["baseline"]
    b = baseline[ALL].grounding
    # "frisbee" on image 1 and "remotes" on image 2; the answer about image 3 is skipped.
    assert (b.answers_checked, b.answers_skipped, b.images_skipped, b.mentions, b.hallucinated) == (
        3, 1, 1, 7, 2)
    assert close(b.chair_i, Fraction(2, 7)) and close(b.chair_s, Fraction(2, 3))
    assert (baseline["conversation"].grounding.chair_i,
            baseline["conversation"].grounding.chair_s) == (0.25, 0.5)
    assert baseline["complex_reasoning"].grounding.answers_checked == 0


def test_judge_scores_and_versions(figures: Figures) -> None:
    judge = figures.judge
    assert judge.histogram == {"1": 0, "2": 0, "3": 0, "4": 0, "5": 1, "6": 1, "7": 2, "8": 1,
                               "9": 1, "10": 1, "unjudged": 1, "gated": 0}
    assert (judge.pairs, judge.judged, judge.kept) == (8, 7, 5)
    assert judge.keep_rate == 5 / 8 and judge.mean_score == 7.5
    assert (judge.accepted_by_review, judge.rejected_by_review) == (1, 1)
    rows = [(v.version, v.name, v.generations, v.parse_failures, v.pairs, v.judged, v.kept)
            for v in judge.versions]
    assert rows == [("v0", "", 1, 0, 1, 1, 1), ("v3", "", 1, 0, 1, 1, 1),
                    ("v1", "conversation", 3, 1, 5, 4, 3), ("v2", "detail", 2, 0, 2, 2, 1)]
    v1 = judge.versions[2]
    assert close(v1.parse_failure_rate, Fraction(1, 3))
    assert v1.mean_score == 7.625 and v1.keep_rate == 0.6


def test_threshold_changes_what_is_kept(tmp_path: Path) -> None:
    store = build_hand_store(tmp_path / "hand.db")
    try:
        figures = analyze(store, 8)
    finally:
        store.close()
    # Kept at 8: the 8, the accepted pair and the 9.
    assert figures.datasets["ours"][ALL].pairs == 3
    assert figures.judge.kept == 3


def test_report_files(figures: Figures, tmp_path: Path) -> None:
    out = tmp_path / "report"
    paths = write_report(figures, out)
    names = {p.name for p in paths}
    assert names == {"report.md", "report.html", "figures.json", "answer_lengths.png",
                     "question_types.png", "judge_scores.png", "grounding.png", "diversity.png"}
    for name in names - {"report.md", "report.html", "figures.json"}:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "figures.json").read_text())
    assert data["datasets"]["ours"]["all"]["grounding"]["chair_i"] == 0.25
    assert data["datasets"]["baseline"]["all"]["turns"]["distribution"] == {"1": 2, "2": 1}
    markdown = (out / "report.md").read_text()
    assert "| all | 25.0% (2/8) | 66.7% (2/3) |" in markdown
    assert "![Judge scores" in markdown and "what is the dog doing" in markdown
    page = (out / "report.html").read_text()
    assert '<img src="grounding.png"' in page and "<script" not in page
    assert not list(out.glob(".*partial*"))


def test_distinct_n_cuts_the_sample_and_keeps_pairs_inside_answers() -> None:
    d1, d2 = distinct_n(["a b c d", "a b e"], 5)
    # Words a b c d | a: 4 distinct of 5; pairs ab bc cd (none across answers): 3 of 3.
    assert (d1, d2) == (0.8, 1.0)
    assert distinct_n([], 0) == (None, None)


def test_percentile_interpolates() -> None:
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert percentile([], 0.5) is None


@pytest.mark.parametrize(("question", "family"), [
    ("What color is the bus?", "what"),
    ("How many people are there?", "how many"),
    ("How is the weather?", "how"),
    ("Is the man wearing a hat?", "yes/no"),
    ("Can you describe the scene?", "describe"),
    ("Could the dog be hungry?", "yes/no"),
    ("In the image, where is the cat?", "where"),
    ("Please explain what is happening.", "describe"),
    ("Whose bag is on the chair?", "who"),
    ("The dog is where?", "other"),
])
def test_question_family(question: str, family: str) -> None:
    assert question_family(question) == family


def test_question_template_folds_case_punctuation_and_digits() -> None:
    assert question_template("What's in photo 12, on the LEFT?") == "whats in photo # on the left"
    assert question_template("How many of the 3 dogs?") == "how many of the # dogs"


def test_category_mentions() -> None:
    assert len(COCO_CATEGORIES) == 80
    assert mentioned_categories("A hot dog beside two dogs and a Teddy Bear.") == {
        "hot dog", "dog", "teddy bear"}
    assert mentioned_categories("Two women, mice, knives and a motorbike") == {
        "person", "mouse", "knife", "motorcycle"}
    assert mentioned_categories("an orange shirt on the ski slope") == frozenset()
    assert mentioned_categories("oranges and skis") == {"orange", "skis"}
    assert mentioned_categories("a doughnut, a fridge, a sofa, a cellphone") == {
        "donut", "refrigerator", "couch", "cell phone"}
    assert mentioned_categories("hotdogs, catering, a cupboard") == {"hot dog"}
    assert plural("wine glass") == ("wine glasses",) and plural("person") == ("people", "persons")


def test_diversity_beside_the_baseline(figures: Figures) -> None:
    ours, baseline = figures.datasets["ours"][ALL], figures.datasets["baseline"][ALL]
    # 5 kept answers against 4 baseline answers: both measured on 4 answers and 4 questions.
    assert (ours.diversity.sample_answers, baseline.diversity.sample_answers) == (4, 4)
    assert (ours.diversity.sample_questions, baseline.diversity.sample_questions) == (4, 4)
    assert ours.diversity.compression_words == baseline.diversity.compression_words > 0
    # The four baseline questions have four different templates: the top ten cover them all.
    assert baseline.diversity.templates == 4 and baseline.diversity.template_share == 1.0
    assert baseline.diversity.near_duplicate_rate == 0.0
    for stats in (ours, baseline):
        assert stats.diversity.self_bleu is not None and 0 <= stats.diversity.self_bleu < 0.5
        assert stats.diversity.compression_ratio is not None


def test_diversity_per_prompt_version(figures: Figures) -> None:
    rows = [(v.task, v.version, v.images, v.pairs) for v in figures.version_diversity]
    # Run generations only (the lab trial of v1 is left out); parse failures have no pairs.
    assert rows == [("complex_reasoning", "v3", 1, 1), ("conversation", "v0", 1, 1),
                    ("conversation", "v1", 2, 5), ("detail", "v2", 2, 2)]
    v1 = figures.version_diversity[2]
    assert v1.name == "conversation"
    # The baseline has one conversation (2 pairs) on v1's images 1 and 2: two answers a side.
    assert (v1.ours.sample_answers, v1.baseline.sample_answers) == (2, 2)
    assert v1.baseline.template_share == 1.0


def test_judge_agreement_from_blind_decisions(tmp_path: Path) -> None:
    store = build_hand_store(tmp_path / "hand.db")
    # Pair ids follow GENERATIONS: 2 scores 8, 3 scores 5, 4 scores 7.5, 5 is unjudged,
    # 8 scores 6, 9 scores 9, 6 (score 10) has a review that is not blind.
    blind = [(2, "accept"), (3, "reject"), (4, "reject"), (5, "accept"), (8, "accept"),
             (9, "accept"), (9, "reject")]

    def add(conn: sqlite3.Connection) -> None:
        for pair_id, decision in blind:
            conn.execute("INSERT INTO reviews (pair_id, decision, created_at, blind) "
                         "VALUES (?, ?, 0, 1)", (pair_id, decision))

    store.write_sync(add)
    try:
        agreement = analyze(store, 7).judge_agreement
    finally:
        store.close()
    assert agreement is not None
    # (score, accepted): (8, yes) (5, no) (7.5, no) (6, yes) (9, no: the later decision).
    # Kept at 7: yes no yes no yes. Agreement 2/5, chance 0.6*0.4 + 0.4*0.6 = 0.48.
    assert (agreement.n, agreement.accepted, agreement.kept) == (5, 2, 3)
    assert agreement.kappa == pytest.approx((0.4 - 0.48) / 0.52)
    assert agreement.precision == pytest.approx(1 / 3) and agreement.recall == 0.5
    assert agreement.kappa_ci is not None


def test_the_report_says_when_it_samples(figures: Figures) -> None:
    from dataclasses import replace

    from visinstruct.core.analysis.report_diversity import diversity_blocks

    text = " ".join(getattr(b, "text", "") for b in diversity_blocks(figures, ["ours"]))
    assert "Sampled:" not in text
    big = replace(figures.datasets["ours"][ALL], pairs=5000)
    datasets = {**figures.datasets, "ours": {**figures.datasets["ours"], ALL: big}}
    blocks = diversity_blocks(replace(figures, datasets=datasets), ["ours", "baseline"])
    text = " ".join(getattr(b, "text", "") for b in blocks)
    assert "Sampled: ours (kept) has 5,000 pairs, so each figure above uses 2,000" in text
