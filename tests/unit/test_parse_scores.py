"""Judge and evaluator replies, including all 80 real GPT-4 reviews, give the right scores."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import REAL_DATA
from visinstruct.core.records import Judgement, Verdict
from visinstruct.core.text.parse_scores import parse_judgement, parse_verdict

DATA = REAL_DATA
REVIEWS = DATA / "llava" / "eval_rules" / "review_bard_vicuna-13b.jsonl"
# In this review the text ends "Assistant 1: 10 / Assistant 2: 4", yet the file's `score`
# field says [10, 2]; the text is what a model sends, so the parser follows the text.
MISRECORDED = {70: (10.0, 4.0)}


def _reviews() -> list[dict[str, Any]]:
    return [json.loads(line) for line in REVIEWS.open()]


def _scores(text: str, n_pairs: int) -> list[float | None]:
    return [j.score for j in parse_judgement(text, n_pairs)]


def test_all_80_real_gpt4_reviews_parse_to_their_recorded_scores() -> None:
    reviews = _reviews()
    assert len(reviews) == 80
    for review in reviews:
        expected = MISRECORDED.get(review["question_id"], tuple(review["score"]))
        verdict = parse_verdict(review["text"])
        assert (verdict.first, verdict.second) == expected, review["question_id"]
        assert _scores(review["text"], 2) == list(expected), review["question_id"]
        assert verdict.rationale and not verdict.rationale[0].isdigit()
    # Guard against the fixture changing under us: the misrecorded one still says [10, 2].
    assert next(r for r in reviews if r["question_id"] == 70)["score"] == [10, 2]


def test_review_reason_is_the_line_after_the_scores() -> None:
    first = _reviews()[0]
    judgements = parse_judgement(first["text"], 2)
    assert judgements[0].reason.startswith("Both Assistant 1 and Assistant 2 provided")
    assert [j.index for j in judgements] == [1, 2]


@pytest.mark.parametrize(
    ("text", "n_pairs", "expected"),
    [
        ("[8, 6, 9]", 3, [8, 6, 9]),
        ('{"scores": [8, 6]}', 2, [8, 6]),
        (
            '{"scores": [{"index": 2, "score": 6, "reason": "vague"},'
            ' {"index": 1, "score": 8, "reason": "ok"}]}',
            2,
            [8, 6],
        ),
        ('[{"pair": 1, "rating": 7}, {"id": 2, "score": "9/10"}]', 2, [7, 9]),
        (
            'Here you go:\n```json\n{"scores": [{"index": 1, "score": 8, "reason": "fine"},]}\n```',
            1,
            [8],
        ),
        ('{"score": 9, "reason": "accurate"}', 1, [9]),
        ('{"pair_1": 7, "pair_2": 5}', 2, [7, 5]),
        ("1: 8\n2: 6", 2, [8, 6]),
        ("Pair 1 - 7/10 - clear\nPair 2 - 6/10", 2, [7, 6]),
        ("Q1 score: 4\nQ2 score: 10\nQ3 score: 9", 3, [4, 10, 9]),
        ("Score: 7", 1, [7]),
        ("Rating: 8/10\nThe answer is right.", 1, [8]),
        ("**Pair 1**: 7 — accurate\n**Pair 2**: 3 — mentions captions", 2, [7, 3]),
        (
            "### Pair 1\nAccurate and clear.\n**Score:** 9\n\n"
            "### Pair 2\nWrong colour.\n**Score:** 2",
            2,
            [9, 2],
        ),
        ("1. 8 - good\n2. 5 - vague\n3. 9 - great", 3, [8, 5, 9]),
        ("Score for pair 2: 6\nScore for pair 1: 9", 2, [9, 6]),
        ("Question 1 (the colour one): 8\nQuestion 2 (the count): 7", 2, [8, 7]),
        ("9 8.5\nBoth are good.", 2, [9, 8.5]),
        ("9 8\n", 3, [9, 8, None]),
    ],
)
def test_judge_formats(text: str, n_pairs: int, expected: list[float | None]) -> None:
    assert _scores(text, n_pairs) == expected


def test_reasons_come_from_the_rest_of_the_line_or_the_json() -> None:
    line = parse_judgement(
        "**Pair 1**: 7 — accurate but short\nPair 2: 4/10 (mentions captions)", 2
    )
    assert line == (Judgement(1, 7.0, "accurate but short"), Judgement(2, 4.0, "mentions captions"))
    js = parse_judgement(
        '{"scores": [{"index": 1, "score": 8, "reason": "clear and grounded"}]}', 1
    )
    assert js == (Judgement(1, 8.0, "clear and grounded"),)


def test_out_of_range_missing_and_unreadable_scores_are_none() -> None:
    assert _scores("1: 11\n2: 0\n3: 7", 3) == [None, None, 7]
    assert _scores("[8]", 3) == [8, None, None]
    assert _scores("1: 9\n5: 8", 2) == [9, None]  # a pair that does not exist is ignored
    assert _scores("The pairs are fine overall.", 2) == [None, None]
    assert _scores("", 2) == [None, None]
    assert parse_judgement("anything", 0) == ()


@pytest.mark.parametrize(
    ("text", "first", "second", "rationale"),
    [
        ("8 6\nAssistant 1 is more detailed.", 8, 6, "Assistant 1 is more detailed."),
        ("8, 6\n\nBoth fine.", 8, 6, "Both fine."),
        ("8.5 7\nClose.", 8.5, 7, "Close."),
        ("**7 9**\nThe second is better.", 7, 9, "The second is better."),
        (
            '{"assistant_1": 8, "assistant_2": 6, "rationale": "first is richer"}',
            8,
            6,
            "first is richer",
        ),
        ('```json\n{"scores": [8, 6], "reason": "ok"}\n```', 8, 6, "ok"),
        ('{"Assistant 1": {"score": 5}, "Assistant 2": {"score": 9}}', 5, 9, ""),
        ("Both tried.\n**Assistant 1:** 8/10\nAssistant 2 scored 6 out of 10.", 8, 6, None),
        ("Assistant 1's score: 7. Assistant 2's score: 9.", 7, 9, None),
    ],
)
def test_verdict_formats(text: str, first: float, second: float, rationale: str | None) -> None:
    verdict = parse_verdict(text)
    assert (verdict.first, verdict.second) == (first, second)
    assert verdict.parsed
    if rationale is not None:
        assert verdict.rationale == rationale


@pytest.mark.parametrize(
    "text",
    [
        "11 6\nToo high.",
        "0 5",
        '{"scores": [8, 12]}',
        "Assistant 1: 8",
        "I liked both.",
        "",
        "8/10",
        "9",
    ],
)
def test_unreadable_or_out_of_range_verdicts_are_unparsed(text: str) -> None:
    verdict = parse_verdict(text)
    assert verdict == Verdict(None, None, verdict.rationale) and not verdict.parsed


def test_score_parsers_never_raise_on_fuzzed_text() -> None:
    from tests.unit.test_parse_pairs import _mutations

    for text in _mutations(seed=11, count=600):
        judgements = parse_judgement(text, 3)
        assert [j.index for j in judgements] == [1, 2, 3]
        assert all(j.score is None or 1 <= j.score <= 10 for j in judgements)
        verdict = parse_verdict(text)
        assert verdict.first is None or 1 <= verdict.first <= 10


def test_score_parsers_never_raise_under_hypothesis() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    strategies = pytest.importorskip("hypothesis.strategies")
    alphabet = strategies.sampled_from(list("0123456789 .,:/-\n{}[]\"'Assistant Pair Score*#"))

    @hypothesis.settings(max_examples=300, deadline=None, database=None)
    @hypothesis.given(
        strategies.text(alphabet=alphabet | strategies.characters()), strategies.integers(0, 6)
    )
    def check(text: str, n_pairs: int) -> None:
        assert len(parse_judgement(text, n_pairs)) == n_pairs
        verdict = parse_verdict(text)
        assert verdict.parsed == (verdict.first is not None)

    check()


def test_reasons_and_rationales_are_stored_clean() -> None:
    """A lone surrogate escape, ESC, NUL or <image> in a reason never reaches the store raw."""
    reply = json.dumps({"scores": [{"index": 1, "score": 8,
                                    "reason": "good \\ud800 \x1b[31mred\x1b[0m\x00 <image> end"}]})
    reply = reply.replace("\\\\ud800", "\\ud800")  # the model's own escape, not an escaped one
    judgement = parse_judgement(reply, 1)[0]
    assert judgement.score == 8
    assert "\ufffd" in judgement.reason and "red" in judgement.reason
    assert "\x1b" not in judgement.reason and "\x00" not in judgement.reason
    assert "<image>" not in judgement.reason
    judgement.reason.encode("utf-8")  # storable: no lone surrogate left
    verdict = parse_verdict('{"scores": [7, 8], "rationale": "tie \\ud800 <image>"}')
    assert (verdict.first, verdict.second) == (7.0, 8.0)
    verdict.rationale.encode("utf-8")
    assert "<image>" not in verdict.rationale
