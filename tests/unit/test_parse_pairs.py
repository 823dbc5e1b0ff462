"""Model replies in every shape real models send come back as clean question-answer pairs."""

from __future__ import annotations

import json
import random

import pytest

from tests.conftest import REAL_DATA
from visinstruct.core.errors import InputError
from visinstruct.core.records import TASKS, Pair
from visinstruct.core.text.model_text import clean_model_text, json_values
from visinstruct.core.text.parse_pairs import ParseResult, leak_of, parse_pairs

DATA = REAL_DATA
CAT = Pair("What animal is on the counter?", "An orange cat.")
SINK = Pair("Where is it sitting?", "Next to the sink.")


def _pairs(text: str, task: str = "conversation") -> tuple[Pair, ...]:
    result = parse_pairs(text, task)
    assert result.problems == (), result.problems
    assert not result.truncated
    return result.pairs


@pytest.mark.parametrize(
    "text",
    [
        (
            '{"pairs": [{"question": "What animal is on the counter?", "answer": "An orange cat."},'
            ' {"question": "Where is it sitting?", "answer": "Next to the sink."}]}'
        ),
        (
            '{"conversation": [{"q": "What animal is on the counter?", "a": "An orange cat."},'
            ' {"q": "Where is it sitting?", "a": "Next to the sink."}]}'
        ),
        (
            '{"questions": [{"Q": "What animal is on the counter?", "A": "An orange cat."},'
            ' {"Q": "Where is it sitting?", "A": "Next to the sink."}]}'
        ),
        (
            '{"questions": ["What animal is on the counter?", "Where is it sitting?"],'
            ' "answers": ["An orange cat.", "Next to the sink."]}'
        ),
        (
            '[{"human": "What animal is on the counter?", "gpt": "An orange cat."},'
            ' {"human": "Where is it sitting?", "gpt": "Next to the sink."}]'
        ),
        (
            '[{"user": "What animal is on the counter?", "assistant": "An orange cat."},'
            ' {"user": "Where is it sitting?", "assistant": "Next to the sink."}]'
        ),
        (
            '{"conversations": ['
            '{"from": "human", "value": "<image>\\nWhat animal is on the counter?"},'
            ' {"from": "gpt", "value": "An orange cat."},'
            ' {"from": "human", "value": "Where is it sitting?"},'
            ' {"from": "gpt", "value": "Next to the sink."}]}'
        ),
        (
            '[{"role": "user", "content": "What animal is on the counter?"},'
            ' {"role": "assistant", "content": "An orange cat."},'
            ' {"role": "user", "content": "Where is it sitting?"},'
            ' {"role": "assistant", "content": "Next to the sink."}]'
        ),
        (
            'Here is the conversation you asked for:\n```json\n{"pairs": [\n'
            '  {"question": "What animal is on the counter?", "answer": "An orange cat."},\n'
            '  {"question": "Where is it sitting?", "answer": "Next to the sink."},\n]}\n```\n'
            'Let me know!'
        ),
        (
            "{'pairs': [{'question': 'What animal is on the counter?', 'answer': 'An orange cat.'},"
            " {'question': 'Where is it sitting?', 'answer': 'Next to the sink.'}]}"
        ),
        (
            '{"question": "What animal is on the counter?", "answer": "An orange cat."}\n'
            '{"question": "Where is it sitting?", "answer": "Next to the sink."}'
        ),
        (
            "Question:\nWhat animal is on the counter?\n===\nAnswer:\nAn orange cat.\n===\n"
            "Question:\nWhere is it sitting?\n===\nAnswer:\nNext to the sink."
        ),
        (
            "Q: What animal is on the counter?\nA: An orange cat.\n\n"
            "Q: Where is it sitting?\nA: Next to the sink."
        ),
        (
            "Q1: What animal is on the counter?\nA1: An orange cat.\n"
            "Q2: Where is it sitting?\nA2: Next to the sink."
        ),
        (
            "User: What animal is on the counter?\nAssistant: An orange cat.\n"
            "User: Where is it sitting?\nAssistant: Next to the sink."
        ),
        (
            "Human: What animal is on the counter?\nGPT: An orange cat.\n"
            "Human: Where is it sitting?\nGPT: Next to the sink."
        ),
        (
            "**Q1:** What animal is on the counter?\n**A1:** An orange cat.\n\n"
            "**Q2:** Where is it sitting?\n**A2:** Next to the sink."
        ),
        (
            "1. **Question:** What animal is on the counter?\n   **Answer:** An orange cat.\n"
            "2. **Question:** Where is it sitting?\n   **Answer:** Next to the sink."
        ),
        (
            "### Question 1\nWhat animal is on the counter?\n### Answer 1\nAn orange cat.\n\n"
            "### Question 2\nWhere is it sitting?\n### Answer 2\nNext to the sink."
        ),
        (
            "**Question 1**: What animal is on the counter? **Answer**: An orange cat.\n"
            "Question 2: Where is it sitting? Answer: Next to the sink."
        ),
        (
            "<s>[INST] Write Q: and A: lines about this photo.\n"
            "Q: Is there an example?\nA: Yes. [/INST]"
            " Q: What animal is on the counter?\nA: An orange cat.\n"
            "Q: Where is it sitting?\nA: Next to the sink.</s>"
        ),
        (
            "<start_of_turn>user\nTalk about the photo.<end_of_turn>\n<start_of_turn>model\n"
            '{"pairs": [{"question": "What animal is on the counter?", "answer": "An orange cat."},'
            ' {"question": "Where is it sitting?", "answer": "Next to the sink."}]}<end_of_turn>'
        ),
    ],
    ids=lambda text: text[:40],
)
def test_every_format_gives_the_same_two_pairs(text: str) -> None:
    assert _pairs(text) == (CAT, SINK)


def test_an_echoed_prompt_with_its_example_is_ignored() -> None:
    echoed = (
        "Write a chat about the photo.\n\nReply format: {...}\n\n"
        "Example\nContext:\nA dog in a park.\n"
        'Reply:\n{"pairs": [{"question": "What animal is in the park?", "answer": "A dog."}]}\n\n'
        "Context:\nAn orange cat by a sink.\nReply:\n"
        "Q: What animal is on the counter?\nA: An orange cat.\n"
        "Q: Where is it sitting?\nA: Next to the sink."
    )
    assert _pairs(echoed) == (CAT, SINK)


def test_multi_line_answers_keep_their_paragraphs() -> None:
    text = (
        "Question: Why is the cat on the counter?\nAnswer: Cats like high places.\n\n"
        "From up there it can watch the room.\n\n\n\nIt may also smell the food.\n"
        "Question: Is it safe?\nAnswer: Mostly, yes."
    )
    first, second = _pairs(text, "complex_reasoning")
    assert first.answer == (
        "Cats like high places.\n\nFrom up there it can watch the room.\n\n"
        "It may also smell the food."
    )
    assert second == Pair("Is it safe?", "Mostly, yes.")


def test_a_last_question_cut_off_at_max_tokens_is_dropped() -> None:
    result = parse_pairs(
        "Q1: What animal is on the counter?\nA1: An orange cat.\n"
        "Q2: Where is it sitting?\nA2: Next to the sink.\n"
        "Q3: What colour are the cupboards?",
        "conversation",
    )
    assert result.pairs == (CAT, SINK) and result.truncated
    assert "last question had no answer" in result.problems[0]


def test_json_cut_off_mid_pair_keeps_the_complete_pairs() -> None:
    result = parse_pairs(
        '```json\n{"pairs": ['
        '{"question": "What animal is on the counter?", "answer": "An orange cat."},'
        ' {"question": "Where is it sitting?", "answer": "Next to the sink."},'
        ' {"question": "What col',
        "conversation",
    )
    assert result.pairs == (CAT, SINK) and result.truncated
    cut_in_first = parse_pairs('{"pairs": [{"question": "What animal is', "conversation")
    assert cut_in_first.pairs == () and cut_in_first.truncated and cut_in_first.problems


def test_a_question_without_answer_in_the_middle_is_dropped_with_a_note() -> None:
    result = parse_pairs(
        "Q: Lonely question?\nQ: What animal is on the counter?\nA: An orange cat.", "conversation"
    )
    assert result.pairs == (CAT,) and not result.truncated
    assert result.problems == ("question without an answer dropped: Lonely question?",)


@pytest.mark.parametrize(
    ("leaky", "reason"),
    [
        (Pair("What do the captions say?", "A cat."), "mentions captions"),
        (Pair("What is on the counter?", "The description says a cat."), "refers to the text"),
        (Pair("Where is the cat?", "Its bounding box is on the left."), "mentions bounding boxes"),
        (Pair("Where is the cat?", "At coordinates near the sink."), "mentions coordinates"),
        (Pair("Where is the cat?", "It is at [0.12, 0.4, 0.56, 0.95]."), "coordinate list"),
        (Pair("Where is the cat?", "Around (0.120, 0.400, 0.560, 0.950)."), "coordinate list"),
    ],
)
def test_leaking_pairs_are_dropped_and_the_rest_kept(leaky: Pair, reason: str) -> None:
    assert reason in leak_of(leaky)
    text = json.dumps({"pairs": [CAT.__dict__, leaky.__dict__, SINK.__dict__]})
    result = parse_pairs(text, "conversation")
    assert result.pairs == (CAT, SINK)
    assert len(result.problems) == 1 and result.problems[0].startswith("pair 2 dropped:")
    assert reason in result.problems[0]


def test_ordinary_words_are_not_leaks() -> None:
    assert (
        leak_of(Pair("How many dogs are there?", "Two dogs [one brown] sit by a box of toys."))
        == ""
    )
    assert leak_of(Pair("What does the sign say?", "It reads 3.5 km to the station.")) == ""


def test_detail_reply_becomes_one_pair_with_the_request_as_question() -> None:
    request = "Describe this image in detail."
    description = (
        "A bright kitchen with white cupboards. "
        "An orange cat sits on the counter next to the sink, "
        "looking at a bowl of lemons."
    )
    for text in (
        json.dumps({"description": description}),
        f"```json\n{json.dumps({'description': description})}\n```",
        f"Description: {description}",
        f"**Detailed description:**\n{description}",
        f"```\n{description}\n```",
        f"[INST] Describe the photo. [/INST] {description}",
        description,
    ):
        result = parse_pairs(text, "detail", description_request=request)
        assert result == ParseResult((Pair(request, description),), (), False), text


def test_detail_cut_off_keeps_complete_sentences() -> None:
    cut = ('{"description": "A cat sits on the counter beside the sink. '
           'The cupboards are white and the')
    result = parse_pairs(cut, "detail", description_request="Describe it.")
    assert result.pairs == (Pair("Describe it.", "A cat sits on the counter beside the sink."),)
    assert result.truncated


def test_detail_leak_drops_the_description() -> None:
    result = parse_pairs(
        "According to the captions, a cat sits on a counter beside a sink in a kitchen.",
        "detail",
        description_request="Describe it.",
    )
    assert result.pairs == () and "mentions captions" in result.problems[0]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty output"),
        ("   \n\t ", "empty output"),
        ("I'm sorry, but I can't help with describing this image.", "the model refused"),
        ("I’m sorry, I cannot do that.", "the model refused"),
        ("As an AI language model, I cannot see images.", "the model refused"),
        ("}{][ ### ,,, {{{ '''", "no "),
        ("<end_of_turn>", "empty output"),
    ],
)
def test_empty_refusals_and_garbage_give_no_pairs_and_a_problem(
    task: str, text: str, problem: str
) -> None:
    result = parse_pairs(text, task, description_request="Describe it.")
    assert result.pairs == ()
    assert len(result.problems) == 1 and result.problems[0].startswith(problem)


def _gpt4_records() -> list[dict[str, str]]:
    path = DATA / "llava" / "llava_bench_coco" / "coco2014_val_gpt4_qa_30x3.jsonl"
    return [json.loads(line) for line in path.open()]


def test_real_gpt4_baseline_text_round_trips_without_false_leaks() -> None:
    records = _gpt4_records()
    for record in records:
        pair = Pair(record["instruction"].strip(), record["output"].strip())
        assert leak_of(pair) == "", record["output"]
        if record["type"] == "detail":
            parsed = parse_pairs(record["output"], "detail", description_request="Describe it.")
            assert parsed == ParseResult((Pair("Describe it.", pair.answer),), (), False)
        else:
            as_text = f"Question:\n{pair.question}\n===\nAnswer:\n{pair.answer}\n==="
            assert _pairs(as_text, "complex_reasoning") == (pair,)
    # The same pairs as a mix665k-shaped record of from/value turns.
    chat = [r for r in records if r["type"] == "conv"][:4]
    turns = []
    for number, record in enumerate(chat):
        prefix = "<image>\n" if number == 0 else ""
        turns += [
            {"from": "human", "value": prefix + record["instruction"]},
            {"from": "gpt", "value": record["output"]},
        ]
    shaped = json.dumps({"id": chat[0]["id"], "image": "x.jpg", "conversations": turns})
    expected = tuple(Pair(r["instruction"].strip(), r["output"].strip()) for r in chat)
    assert _pairs(shaped) == expected


def test_unknown_task_is_a_caller_error() -> None:
    with pytest.raises(InputError, match="unknown task 'chat'"):
        parse_pairs("Q: a?\nA: b.", "chat")


def test_clean_model_text_and_json_values() -> None:
    assert clean_model_text("[INST] hi [/INST] answer [INST] more") == "answer"
    assert clean_model_text("```json\n[1, 2]\n```") == "[1, 2]"
    assert json_values('x {"a": [1, 2,],} y [3] {broken') == [({"a": [1, 2]}, False), ([3], False)]
    assert json_values('{"a": [1, {"b": 2}, {"c"') == [({"a": [1, {"b": 2}]}, True)]


def _real_gpt4_replies() -> list[str]:
    """Real model text in many shapes: GPT-4 answers and reviews from LLaVA's fixtures."""
    replies = []
    for name in (
        "llava_bench_coco/qa90_gpt4_answer.jsonl",
        "eval_rules/review_bard_vicuna-13b.jsonl",
    ):
        for line in (DATA / "llava" / name).open():
            replies.append(json.loads(line)["text"])
    return replies


def _mutations(seed: int, count: int) -> list[str]:
    """Cut, spliced and noised variants of real replies and of our own formats."""
    rng = random.Random(seed)
    pieces = _real_gpt4_replies() + [
        '{"pairs": [{"question": "a?", "answer": "b."}]}',
        "Q1: a?\nA1: b.",
        "```json\n[{'q': 1}]\n```",
        "[INST] x [/INST]",
        "Question:\n===\nAnswer:",
        "{{{{[[[[",
        "\\\"'",
        "<start_of_turn>model",
    ]
    alphabet = "{}[]\"':,\\\n *#=-QA1.0abc"
    out = []
    for _ in range(count):
        text = rng.choice(pieces)
        text = text[rng.randrange(len(text) + 1) :] if rng.random() < 0.3 else text
        text = text[: rng.randrange(len(text) + 1)]
        for _ in range(rng.randrange(4)):
            at = rng.randrange(len(text) + 1)
            text = (
                text[:at]
                + "".join(rng.choice(alphabet) for _ in range(rng.randrange(6)))
                + text[at:]
            )
        out.append(text + rng.choice(pieces)[: rng.randrange(40)])
    return out


def test_fuzzed_replies_never_raise() -> None:
    for text in _mutations(seed=7, count=600):
        for task in TASKS:
            result = parse_pairs(text, task, description_request="Describe it.")
            assert not any(p.startswith("internal parser error") for p in result.problems), text
            assert all(p.question and p.answer for p in result.pairs)


def test_hypothesis_never_raises() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    strategies = pytest.importorskip("hypothesis.strategies")

    @hypothesis.settings(max_examples=300, deadline=None, database=None)
    @hypothesis.given(
        strategies.text(
            alphabet=strategies.sampled_from(list("{}[]\"':,\\\n *#=-QA1.0abc<>/"))
            | strategies.characters()
        ),
        strategies.sampled_from(TASKS),
    )
    def check(text: str, task: str) -> None:
        result = parse_pairs(text, task, description_request="Describe it.")
        assert not any(p.startswith("internal parser error") for p in result.problems)

    check()
