"""Diversity figures against values worked out by hand."""

from __future__ import annotations

import itertools
import random
import zlib

import pytest
from sacrebleu.metrics.bleu import BLEU

from visinstruct.core.analysis.diversity import (
    SAMPLE_CAP,
    compression_ratio,
    first_words,
    jaccard,
    measure_sides,
    near_duplicate_pairs,
    near_duplicate_rate,
    question_skeleton,
    sample_texts,
    self_bleu,
    shingles,
    template_share,
)


def test_self_bleu_of_two_answers_by_hand() -> None:
    # "the cat sat on the mat" against "the cat sat on a mat": clipped matches 5/6 words,
    # 3/5 bigrams, 2/4 trigrams, 1/3 four-grams; equal lengths, so no brevity penalty.
    # The other way round gives the same counts.
    answers = ["The cat sat on the mat", "the cat sat on a mat"]
    expected = (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert self_bleu(answers) == pytest.approx(expected)
    assert expected == pytest.approx(0.5373, abs=1e-4)


def test_self_bleu_extremes() -> None:
    assert self_bleu(["a dog runs in the park"] * 3) == pytest.approx(1.0)
    assert self_bleu(["one two three four", "five six seven eight"]) == 0.0
    assert self_bleu(["only one answer"]) is None
    assert self_bleu([]) is None


def test_self_bleu_matches_sacrebleu_sentence_bleu_against_all_others() -> None:
    rng = random.Random(3)
    vocabulary = ["a", "the", "dog", "cat", "sits", "runs", "on", "in", "park", "grass", "red",
                  "big", "small", "near"]
    answers = [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(2, 12)))
               for _ in range(12)]
    bleu = BLEU(lowercase=True, effective_order=True, smooth_method="exp")
    slow = [bleu.sentence_score(a, answers[:i] + answers[i + 1:]).score / 100
            for i, a in enumerate(answers)]
    assert self_bleu(answers) == pytest.approx(sum(slow) / len(slow))


def test_compression_ratio() -> None:
    texts = ["a red bus on a street", "two dogs play in the grass"]
    raw = b"a red bus on a street\ntwo dogs play in the grass"
    assert compression_ratio(texts) == len(raw) / len(zlib.compress(raw, 6))
    repeated = compression_ratio(["A sunny morning outside a small bakery."] * 50)
    varied = compression_ratio([f"answer {n} names object {n * 7919 % 1000}" for n in range(50)])
    assert repeated is not None and varied is not None and repeated > 3 * varied
    assert compression_ratio([]) is None and compression_ratio([""]) is None


def test_first_words_cuts_to_a_word_budget() -> None:
    assert first_words(["a b c", "d e", "f"], 4) == ["a b c", "d"]
    assert first_words(["a b"], 0) == []


def test_question_skeleton_masks_content_words() -> None:
    assert question_skeleton("What color is the bus?") == "what color is the _"
    assert question_skeleton("What is the man holding in his hand?") == "what is the _ in his _"
    assert question_skeleton("<image>\nHow many giraffes are there?") == "how many _ are there"
    assert question_skeleton("Describe the image in detail.") == "_ the _ in _"
    assert question_skeleton("...") == ""


def test_template_share_by_hand() -> None:
    questions = ["What color is the bus?", "What color is the car?", "Where is the dog?",
                 "Where is the cat?", "How many people are there?"]
    # Skeletons: "what color is the _" x2, "where is the _" x2, "how many _ are there" x1.
    top2 = template_share(questions, top=2)
    assert (top2.questions, top2.templates, top2.share) == (5, 3, 0.8)
    assert top2.top == (("what color is the _", 2), ("where is the _", 2))
    assert template_share(questions).share == 1.0
    assert template_share([]).share is None


def test_shingles_and_jaccard() -> None:
    assert shingles("A b c d") == {("a", "b", "c"), ("b", "c", "d")}
    assert shingles("Hi there") == {("hi", "there")}
    assert shingles("!!") == frozenset()
    assert jaccard(shingles("a b c d e"), shingles("a b c d f")) == 0.5   # 2 shared of 4
    assert jaccard(frozenset(), frozenset()) == 1.0


def test_near_duplicates_by_hand() -> None:
    texts = ["a b c d e", "A b, c d e.", "a b c d f", "x y z"]
    assert near_duplicate_pairs(texts) == [(0, 1)]
    assert near_duplicate_pairs(texts, threshold=0.5) == [(0, 1), (0, 2), (1, 2)]
    assert near_duplicate_rate(texts) == 0.5
    assert near_duplicate_rate([]) is None
    assert near_duplicate_rate(["one text only"]) == 0.0


def test_near_duplicate_pairs_equal_brute_force() -> None:
    rng = random.Random(7)
    base = ["the", "dog", "sits", "on", "a", "red", "mat", "near", "the", "old", "wooden", "door",
            "of", "the", "house"]
    texts = []
    for _ in range(60):
        tokens = list(base[: rng.randint(3, len(base))])
        for _ in range(rng.randint(0, 3)):
            tokens[rng.randrange(len(tokens))] = rng.choice(["cat", "blue", "big", "under"])
        texts.append(" ".join(tokens))
    for threshold in (0.5, 0.8, 1.0):
        sets = [shingles(t) for t in texts]
        brute = [(i, j) for i, j in itertools.combinations(range(len(texts)), 2)
                 if jaccard(sets[i], sets[j]) >= threshold]
        assert near_duplicate_pairs(texts, threshold) == brute


def test_sample_texts_is_seeded_and_capped() -> None:
    texts = [str(n) for n in range(10)]
    assert sample_texts(texts, cap=20) == texts
    assert sample_texts(texts, cap=4, seed=1) == sample_texts(texts, cap=4, seed=1)
    assert len(set(sample_texts(texts, cap=4))) == 4


def test_measure_sides_uses_equal_samples() -> None:
    ours = (["a b c d", "a b c d", "e f g h"], ["What is the dog?", "What is the cat?", "Why?"])
    theirs = (["w x y z", "p q r s"], ["Where is it?", "Who is he?"])
    result = measure_sides({"ours": ours, "baseline": theirs, "none": ([], [])})
    for side in ("ours", "baseline"):
        d = result[side]
        assert (d.sample_answers, d.sample_questions, d.sample_tokens) == (2, 2, 8)
    assert result["ours"].total_tokens == 12
    assert result["baseline"].self_bleu == 0.0 and result["baseline"].near_duplicate_rate == 0.0
    none = result["none"]
    assert (none.sample_answers, none.self_bleu, none.template_share) == (0, None, None)


def test_measure_sides_caps_large_sets() -> None:
    many = [f"answer number {n}" for n in range(SAMPLE_CAP + 50)]
    result = measure_sides({"ours": (many, many)}, cap=100)
    assert result["ours"].sample_answers == 100 and result["ours"].sample_questions == 100
