"""The quality gates, rule by rule: what each stops, and the near misses that must pass."""

from __future__ import annotations

from dataclasses import replace

import pytest

from visinstruct.core.config import GatesConfig
from visinstruct.core.records import Box, Image, Pair
from visinstruct.core.text.gates import DROP, FLAG, gate_pairs, prompt_text
from visinstruct.core.text.prompts import load_prompt

BUS = Image(1, "bus.jpg", 640, 480,
            ("A red bus drives down a city street.", "A man waits at a bus stop."),
            (Box("bus", (0.1, 0.2, 0.8, 0.9)), Box("person", (0.7, 0.3, 0.8, 0.9))))
GOOD = Pair("What colour is the bus?", "The bus is red.")
DEFAULTS = GatesConfig()


def verdicts(*pairs: Pair, task: str = "conversation", finish: str = "stop",
             settings: GatesConfig = DEFAULTS, image: Image = BUS) -> list[list[tuple[str, str]]]:
    prompt = prompt_text(load_prompt("detail" if task == "detail" else "conversation"))
    found = gate_pairs(pairs, image, task, settings, prompt=prompt, finish_reason=finish)
    return [[(v.rule, v.action) for v in one] for one in found]


def dropped_by(pair: Pair, **kwargs: object) -> str | None:
    only = verdicts(pair, **kwargs)[0]  # type: ignore[arg-type]
    return next((rule for rule, action in only if action == DROP), None)


def test_a_good_pair_passes_every_rule() -> None:
    assert verdicts(GOOD) == [[]]


@pytest.mark.parametrize("pair", [
    Pair("...", "..."),
    Pair("What is it?", ""),
    Pair("What is it?", "?!"),
    Pair("[Question 4 goes here]", "A bus."),
    Pair("What colour is the bus?", "<answer>"),
    Pair("Describe {caption}", "A bus on a street."),
    Pair("What colour is the bus?", "N/A"),
    Pair("What colour is the bus?", "Lorem ipsum dolor sit amet."),
])
def test_placeholder_text_is_dropped(pair: Pair) -> None:
    assert dropped_by(pair) == "placeholder"


@pytest.mark.parametrize("pair", [
    Pair("How many buses are there?", "None."),
    Pair("What does the sign say?", "It says \"Stop\"."),
    Pair("What colour is the bus?", "Red..."),
])
def test_short_or_quoted_answers_are_not_placeholders(pair: Pair) -> None:
    assert dropped_by(pair) is None


@pytest.mark.parametrize("answer", [
    "As an AI, I cannot see images.",
    "I'm sorry, but I can't view the image you provided.",
    "I am an AI language model and do not have eyes.",
    "I cannot answer that question.",
    "I don't have the ability to see pictures.",
])
def test_refusals_are_dropped(answer: str) -> None:
    assert dropped_by(Pair("What is on the street?", answer)) == "refusal"


@pytest.mark.parametrize("answer", [
    "I can see a red bus driving down the street.",
    "The man cannot see the bus yet because it is behind him.",
    "No, the bus is not leaving yet.",
])
def test_answers_that_only_sound_negative_are_not_refusals(answer: str) -> None:
    assert dropped_by(Pair("What is happening?", answer)) is None


def test_a_reply_cut_at_the_token_limit_loses_its_unfinished_last_pair() -> None:
    cut = Pair("Where is the man?", "The")
    assert verdicts(GOOD, cut, finish="length") == [[], [("cut_off", DROP)]]
    assert verdicts(GOOD, cut, finish="max_tokens") == [[], [("cut_off", DROP)]]
    # Finished sentences survive a cut, and an unfinished answer is fine when nothing was cut.
    done = Pair("Where is the man?", "He stands at the bus stop.")
    assert verdicts(GOOD, done, finish="length") == [[], []]
    assert verdicts(GOOD, cut, finish="stop")[1] == []
    # Only the last pair can be the cut one; detail keeps its complete sentences upstream.
    assert verdicts(Pair("Q?", "Unfinished"), GOOD, finish="length")[0] == []
    assert verdicts(Pair("Describe this image.", "A red bus on a"), task="detail",
                    finish="length") == [[]]


@pytest.mark.parametrize("question, answer", [
    ("They will most likely board the bus.", "They will most likely board the bus."),
    ("What is the man doing?", "The man is doing."),
    ("Is the bus red?", "is the bus red"),
])
def test_an_answer_that_repeats_the_question_is_dropped(question: str, answer: str) -> None:
    assert dropped_by(Pair(question, answer)) == "same_as_question"


@pytest.mark.parametrize("question, answer", [
    ("Is there a bus?", "There is a bus."),                  # yes/no: a restatement answers it
    ("Is the man waiting for the bus?", "Yes, the man is waiting for the bus."),
    ("Which is bigger, the bus or the man?", "The bus is bigger."),
    ("What colour is the bus?", "Red."),
])
def test_answers_that_reuse_the_question_words_but_answer_it_pass(question: str,
                                                                  answer: str) -> None:
    assert dropped_by(Pair(question, answer)) is None


def test_an_echo_of_the_prompts_example_is_dropped_as_a_prompt_copy() -> None:
    copied = Pair("Describe this image in detail.",
                  "A sunny morning outside a small bakery. A red bicycle leans against the shop "
                  "window on the left side of the picture.")
    assert dropped_by(copied, task="detail") == "prompt_copy"
    instruction = Pair("What should I do?",
                       "Write a chat of 3 to 5 turns about the photo.")
    assert dropped_by(instruction) == "prompt_copy"


def test_a_real_question_sharing_a_few_words_with_the_instructions_passes() -> None:
    # "what people or animals are doing" is in the instruction: five words, not eight.
    near = Pair("What are the people or animals doing in the photo?",
                "A man is waiting at the bus stop while the bus drives by.")
    assert dropped_by(near) is None


def test_words_from_the_images_own_captions_are_not_a_copy() -> None:
    # The example context's caption also describes this image: the image's words win.
    image = replace(BUS, captions=("An orange cat sitting on a kitchen counter beside the sink.",),
                    boxes=())
    own = Pair("Where is the cat?", "An orange cat sitting on a kitchen counter beside the sink.")
    assert dropped_by(own, image=image) is None


def test_the_copy_length_is_a_setting() -> None:
    # Six words in a row from the instruction: fewer than 8, at least 4.
    near = Pair("Can you see what people or animals are doing?", "A man waits for the bus.")
    assert dropped_by(near) is None
    assert dropped_by(near, settings=GatesConfig(prompt_copy_words=4)) == "prompt_copy"


def test_a_repeated_or_reworded_pair_of_the_same_image_is_dropped_the_first_kept() -> None:
    again = Pair("What colour is the bus?", "The bus is red.")
    reworded = Pair("What is the colour of the bus?", "The bus is red.")
    assert verdicts(GOOD, again) == [[], [("duplicate", DROP)]]
    assert verdicts(GOOD, reworded) == [[], [("duplicate", DROP)]]


def test_two_different_questions_about_the_same_object_both_pass() -> None:
    other = Pair("Where is the bus going?", "The bus is heading down the city street.")
    assert verdicts(GOOD, other) == [[], []]


def test_the_duplicate_threshold_is_a_setting() -> None:
    reworded = Pair("What is the colour of the bus?", "The bus is red.")
    strict = GatesConfig(duplicate_similarity=1.0)
    assert verdicts(GOOD, reworded, settings=strict) == [[], []]


def test_an_object_the_image_has_no_box_for_is_flagged_or_dropped_as_configured() -> None:
    dog = Pair("What is next to the man?", "A small dog sits next to the man.")
    assert verdicts(dog) == [[("ungrounded_object", FLAG)]]
    assert verdicts(dog, settings=GatesConfig(ungrounded_object="drop")) == [
        [("ungrounded_object", DROP)]]
    assert verdicts(dog, settings=GatesConfig(ungrounded_object="off")) == [[]]


@pytest.mark.parametrize("answer", [
    "There is no dog in the scene.",          # a denial affirms nothing
    "A man waits for the bus.",               # "man" is a person: boxed
])
def test_denied_or_boxed_objects_are_not_flagged(answer: str) -> None:
    assert verdicts(Pair("Is there a dog?", answer)) == [[]]


def test_an_image_without_boxes_is_not_checked_for_objects() -> None:
    image = replace(BUS, boxes=())
    assert verdicts(Pair("What is next to the man?", "A dog."), image=image) == [[]]


def test_every_rule_can_be_turned_off() -> None:
    off = GatesConfig(cut_off=False, prompt_copy=False, same_as_question=False, placeholder=False,
                      refusal=False, duplicate=False, ungrounded_object="off",
                      repeated_sentence=False)
    bad = [Pair("...", "..."), Pair("Q?", "As an AI I cannot see images."),
           Pair("They board.", "They board."), Pair("...", "..."), Pair("Q2?", "The"),
           Pair("Q3?", "The bus is red. The bus is red.")]
    assert verdicts(*bad, finish="length", settings=off) == [[]] * 6


@pytest.mark.parametrize("answer", [
    # the same sentence twice, with another between them
    "The bus is red. It waits at the stop. The bus is red.",
    # the same words again, reworded with other filler (the small model's way)
    "The kitchen has a white refrigerator. There is a white refrigerator in the kitchen.",
    "A man rides a red bike down the street. A man is riding a red bike down the street!",
    # on separate lines, without end punctuation
    "Two people wait at the bus stop\nTwo people wait at the bus stop",
    # the bundled model's description in `make demo` (image 990002): the last two sentences
    "A brown dog runs across the lawn chasing a flying disc. A person and a dog play fetch "
    "with a frisbee on a sunny day. A person and a dog are playing catch on a sunny day.",
])
def test_an_answer_that_says_the_same_thing_twice_is_dropped(answer: str) -> None:
    assert dropped_by(Pair("Describe the image.", answer), task="detail") == "repeated_sentence"


@pytest.mark.parametrize("answer", [
    "The bus is red. The bus is long.",                      # same subject, new facts
    "A man waits at the stop. A woman waits at the stop too.",
    "Yes. Yes.",                                             # too short to be a repeat
    "On the left side:\n- a red bus\nOn the right side:\n- a man waiting",  # headings aside
    "Things to notice here:\n- the bus\nThings to notice here:\n- the man",
    "The first box on the left holds a small pizza. The third box on the right holds "
    "another small pizza.",                                   # GPT-4's closest pair of sentences
])
def test_sentences_that_share_words_but_say_new_things_pass(answer: str) -> None:
    assert dropped_by(Pair("Describe the image.", answer), task="detail") is None


def test_no_bundled_gpt4_answer_trips_the_repeated_sentence_rule() -> None:
    import json
    from pathlib import Path

    from visinstruct.core.text.gates import repeated_sentence

    bench = Path(__file__).parents[1] / "data" / "llava" / "llava_bench_coco"
    answers = [json.loads(line)["text"]
               for line in (bench / "qa90_gpt4_answer.jsonl").read_text().splitlines()]
    answers += [json.loads(line)["output"] for line in
                (bench / "coco2014_val_gpt4_qa_30x3.jsonl").read_text().splitlines()]
    assert len(answers) == 180
    assert [a for a in answers if repeated_sentence(a)] == []
    # Through the gates as a run meets them, with the rule's default threshold.
    pairs = [Pair("Describe the image.", answer) for answer in answers]
    found = gate_pairs(pairs, replace(BUS, boxes=()), "detail",
                       GatesConfig(duplicate=False))
    assert not any(v.rule == "repeated_sentence" for one in found for v in one)


def test_the_repeated_sentence_threshold_is_configurable() -> None:
    answer = "A man rides a red bike down the street. A man pushes a red bike down the street."
    assert dropped_by(Pair("Q?", answer)) == "repeated_sentence"  # 4 of 6 content words: 0.67
    strict = GatesConfig(repeated_sentence_similarity=0.9)
    assert dropped_by(Pair("Q?", answer), settings=strict) is None


@pytest.mark.parametrize("reason", ["", "  ", "...", "N/A", "reason", "Reason.", "<reason>",
                                    "[your reason here]", "none"])
def test_a_judge_reason_that_says_nothing_is_named(reason: str) -> None:
    from visinstruct.core.text.gates import missing_reason

    assert missing_reason(reason).startswith("the judge's reason ")


@pytest.mark.parametrize("reason", ["Grounded in the captions.", "ok", "wrong colour",
                                    "The reason given is sound."])
def test_a_judge_reason_with_words_is_not_marked(reason: str) -> None:
    from visinstruct.core.text.gates import missing_reason

    assert missing_reason(reason) == ""


def test_a_judge_reply_with_placeholder_reasons_parses_to_marked_reasons() -> None:
    from visinstruct.core.text.gates import missing_reason
    from visinstruct.core.text.parse_scores import parse_judgement

    reply = ('{"scores": [{"index": 1, "score": 8, "reason": "..."}, '
             '{"index": 2, "score": 6, "reason": ""}, {"index": 3, "score": 9, '
             '"reason": "Matches the boxes."}]}')
    found = parse_judgement(reply, 3)
    assert [j.score for j in found] == [8, 6, 9]
    assert [bool(missing_reason(j.reason)) for j in found] == [True, True, False]


@pytest.mark.parametrize("reason", ["length", "max_tokens", "MAX_TOKENS", "max_length"])
def test_every_wire_spelling_of_the_token_limit_reads_as_cut_off(reason: str) -> None:
    from visinstruct.core.models.backends.replies import normal_finish_reason
    from visinstruct.core.text.gates import is_cut_off

    assert normal_finish_reason(reason) == "length"
    assert is_cut_off(reason) and is_cut_off(normal_finish_reason(reason))
    assert not is_cut_off(normal_finish_reason("end_turn"))


def test_similarity_of_parts_is_the_jaccard_of_tagged_words() -> None:
    from visinstruct.core.text.gates import similarity
    q1, q2 = frozenset({"what", "colour", "bus"}), frozenset({"what", "is", "the", "bus"})
    a1, a2 = frozenset({"red", "bus"}), frozenset({"the", "bus", "is", "red"})

    def tagged(q: frozenset[str], a: frozenset[str]) -> frozenset[str]:
        return frozenset({"q " + w for w in q} | {"a " + w for w in a})

    assert similarity(q1, q2, a1, a2) == similarity(tagged(q1, a1), tagged(q2, a2)) == 4 / 9
    assert similarity(frozenset(), frozenset(), frozenset(), frozenset()) == 1.0
