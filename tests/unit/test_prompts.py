"""Prompt files load, validate, hash by content and render into compact messages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import REAL_DATA
from visinstruct.core.errors import ConfigError
from visinstruct.core.records import TASKS, Box, Image, Pair
from visinstruct.core.text.parse_pairs import parse_pairs
from visinstruct.core.text.parse_scores import parse_judgement
from visinstruct.core.text.prompts import (
    DETAIL_SCHEMA,
    GENERATION_SCHEMA,
    JUDGE_SCHEMA,
    REPLY_CUE,
    answer_messages,
    available_prompts,
    evaluation_messages,
    generation_messages,
    judge_messages,
    load_prompt,
    load_prompt_file,
    output_schema,
    parse_prompt,
    pick_description_request,
    render_context,
)

DATA = REAL_DATA
ALL_PROMPTS = ("answer", "complex_reasoning", "complex_reasoning_vision", "conversation",
               "conversation_vision", "detail", "detail_vision", "evaluate", "judge",
               "judge_vision", "short_answer")
BOX_LINE = re.compile(r"^(?P<category>[^:]+): \[(?P<coords>[^\]]+)\]$")


def _image_from_context(context: str) -> Image:
    """Read a rendered context back into an Image (captions, then box lines)."""
    captions, boxes = [], []
    for line in context.split("\n"):
        match = BOX_LINE.match(line)
        if match:
            coords = tuple(float(v) for v in match.group("coords").split(", "))
            boxes.append(Box(match.group("category"), coords))  # type: ignore[arg-type]
        elif line:
            captions.append(line)
    return Image(1, "x.jpg", 640, 480, tuple(captions), tuple(boxes))


def _estimated_tokens(text: str) -> int:
    """Rough token count: Gemma splits digits one per token; other text runs about 4 chars a
    token."""
    digits = sum(ch.isdigit() for ch in text)
    return digits + (len(text) - digits) // 4


@pytest.fixture(scope="module")
def val_captions() -> dict[int, list[str]]:
    data = json.loads((DATA / "coco" / "captions_val2017_sample300.json").read_text())
    by_image: dict[int, list[str]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann["caption"])
    return by_image


def test_every_packaged_prompt_loads() -> None:
    assert available_prompts() == ALL_PROMPTS
    for name in ALL_PROMPTS:
        template = load_prompt(name)
        assert template.name == name
        assert template.system and template.instruction and template.output_format
        assert re.fullmatch(r"[0-9a-f]{12}", template.version)
    assert {load_prompt(t).task for t in TASKS} == set(TASKS)
    assert [load_prompt(t).include_boxes for t in TASKS] == [False, True, True]
    assert len({load_prompt(n).version for n in ALL_PROMPTS}) == len(ALL_PROMPTS)


def test_version_ignores_whitespace_but_not_content() -> None:
    template = load_prompt("conversation")
    spaced = "\r\n".join(line + "   " for line in template.text.split("\n")) + "\n\n"
    assert parse_prompt(spaced).version == template.version
    edited = template.text.replace("3 to 5 turns", "3 to 6 turns")
    assert edited != template.text
    assert parse_prompt(edited).version != template.version


def test_examples_render_exactly_like_render_context_and_parse_cleanly() -> None:
    for task in TASKS:
        template = load_prompt(task)
        assert 1 <= len(template.examples) <= 2
        for context, output in template.examples:
            image = _image_from_context(context)
            assert render_context(image, template.include_boxes) == context
            request = template.description_requests[0] if task == "detail" else ""
            result = parse_pairs(output, task, description_request=request)
            assert result.pairs and result.problems == () and not result.truncated


def test_detail_has_about_a_dozen_distinct_requests() -> None:
    requests = load_prompt("detail").description_requests
    assert 10 <= len(requests) <= 14 and len(set(requests)) == len(requests)
    chosen = {pick_description_request(load_prompt("detail"), image_id) for image_id in range(200)}
    assert len(chosen) >= 10
    assert pick_description_request(load_prompt("detail"), 139) == pick_description_request(
        load_prompt("detail"), 139
    )
    with pytest.raises(ConfigError, match="description_requests"):
        pick_description_request(load_prompt("conversation"), 1)


def test_render_context_keeps_every_caption_of_an_image_with_seven(
    val_captions: dict[int, list[str]],
) -> None:
    image_id, captions = next((i, c) for i, c in val_captions.items() if len(c) == 7)
    image = Image(image_id, f"{image_id:012d}.jpg", 640, 480, tuple(captions))
    lines = render_context(image, include_boxes=True).split("\n")
    assert lines == [" ".join(c.split()) for c in captions]  # whitespace in real captions is tidied
    six = next(c for c in val_captions.values() if len(c) == 6)
    assert len(render_context(Image(1, "a.jpg", 1, 1, tuple(six)), False).split("\n")) == 6


def test_render_context_with_boxes() -> None:
    image = Image(
        7,
        "7.jpg",
        640,
        480,
        captions=(" A dog on a couch.\n", "", "A brown dog resting."),
        boxes=(
            Box("dog", (0.12, 0.4, 0.56, 0.95)),
            Box("person", (0.0, 0.1, 0.3333, 1.0), crowd=True),
        ),
    )
    assert render_context(image, include_boxes=True) == (
        "A dog on a couch.\nA brown dog resting.\n\n"
        "dog: [0.120, 0.400, 0.560, 0.950]\nperson: [0.000, 0.100, 0.333, 1.000]"
    )
    assert render_context(image, include_boxes=False) == "A dog on a couch.\nA brown dog resting."
    only_boxes = Image(8, "8.jpg", 1, 1, boxes=(Box("cat", (0.1, 0.2, 0.3, 0.4)),))
    assert render_context(only_boxes, True) == "cat: [0.100, 0.200, 0.300, 0.400]"
    assert render_context(Image(9, "9.jpg", 1, 1), True) == ""


def test_generation_prompt_is_compact_for_a_typical_image() -> None:
    records = [
        json.loads(line)
        for line in (
            DATA / "llava" / "llava_bench_coco" / "caps_boxes_coco2014_val_80.jsonl"
        ).open()
    ]
    typical = next(r for r in records if len(r["captions"]) == 5 and len(r["instances"]) == 8)
    image = Image(
        int(typical["id"]),
        typical["image"],
        640,
        480,
        tuple(typical["captions"]),
        tuple(Box(i["category"], tuple(i["bbox"])) for i in typical["instances"]),
    )
    for task in TASKS:
        messages = generation_messages(load_prompt(task), image)
        assert [m.role for m in messages] == ["system", "user"]
        user = messages[1].content
        assert user.endswith(
            f"Context:\n{render_context(image, load_prompt(task).include_boxes)}\n{REPLY_CUE}"
        )
        assert _estimated_tokens("\n".join(m.content for m in messages)) < 700, task


def test_judge_messages_number_the_pairs() -> None:
    image = Image(3, "3.jpg", 1, 1, ("A cat on a mat.",), (Box("cat", (0.1, 0.1, 0.5, 0.5)),))
    pairs = [Pair("<image>\nWhat animal is this?", "A cat."), Pair("Where is it?", "On a mat.")]
    system, user = judge_messages(load_prompt("judge"), image, pairs)
    assert system.role == "system" and user.role == "user"
    assert "Pair 1\nQuestion: What animal is this?\nAnswer: A cat." in user.content
    assert "Pair 2\nQuestion: Where is it?\nAnswer: On a mat." in user.content
    assert "cat: [0.100, 0.100, 0.500, 0.500]" in user.content and "<image>" not in user.content
    # The format the judge is asked for is one the score parser reads.
    asked = ('{"scores": [{"index": 1, "score": 8, "reason": "fine"},'
             ' {"index": 2, "score": 6, "reason": "ok"}]}')
    assert [j.score for j in parse_judgement(asked, 2)] == [8.0, 6.0]


def test_evaluation_and_answer_messages() -> None:
    image = Image(4, "4.jpg", 1, 1, ("A bus at a stop.",))
    template = load_prompt("evaluate")
    messages = evaluation_messages(
        template, image, "<image>\nDescribe it.", "First reply.", "Second reply."
    )
    user = messages[-1].content
    assert user.index("Assistant 1:\nFirst reply.") < user.index("Assistant 2:\nSecond reply.")
    assert "User request:\nDescribe it." in user and messages[-1].images == ()
    with_picture = evaluation_messages(template, image, "Q?", "a", "b", picture=b"\xff\xd8jpeg")
    assert with_picture[-1].images == (b"\xff\xd8jpeg",)
    asked = answer_messages(load_prompt("answer"), image, "<image>\nWhat vehicle is there?")
    assert asked[-1].content.endswith(f"Question: What vehicle is there?\n{REPLY_CUE}")


def test_schemas_match_the_output_formats() -> None:
    assert output_schema(load_prompt("conversation")) is GENERATION_SCHEMA
    assert output_schema(load_prompt("complex_reasoning")) is GENERATION_SCHEMA
    assert output_schema(load_prompt("detail")) is DETAIL_SCHEMA
    assert output_schema(load_prompt("judge")) is JUDGE_SCHEMA
    assert output_schema(load_prompt("evaluate")) is None
    for task in TASKS:
        for _, output in load_prompt(task).examples:
            schema = output_schema(load_prompt(task))
            assert schema is not None
            assert set(json.loads(output)) == set(schema["required"])


GOOD = """
name = "mine"
task = "conversation"
include_boxes = false
system = "You see a photo."
instruction = "Ask things."
output_format = "{}"
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GOOD.replace("instruction =", "instructions ="),
            "my.toml: unknown key 'instructions'; did you mean 'instruction'?",
        ),
        (GOOD.replace('system = "You see a photo."', ""), "my.toml: missing key 'system'"),
        (
            GOOD.replace("include_boxes = false", 'include_boxes = "no"'),
            "my.toml: key 'include_boxes' must be true or false",
        ),
        (
            GOOD.replace('task = "conversation"', 'task = "conversaton"'),
            "did you mean 'conversation'?",
        ),
        (GOOD.replace('task = "conversation"', 'task = "detail"'), "needs 'description_requests'"),
        (GOOD + "[[examples]]\ncontext = 'x'\n", "my.toml: examples entry 1 needs output"),
        (
            GOOD + "[[examples]]\ncontext = 'x'\noutput = 'y'\ncontxt = 'z'\n",
            "did you mean 'context'?",
        ),
        (GOOD + "name = 'twice'\n", "my.toml: not valid TOML"),
    ],
)
def test_prompt_validation_names_the_file_and_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_prompt(text, source="my.toml")
    assert message in str(raised.value)


def test_load_prompt_rejects_unknown_names_and_reads_user_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'judge'"):
        load_prompt("judgee")
    mine = tmp_path / "mine.toml"
    mine.write_text(GOOD)
    assert load_prompt_file(mine).name == "mine"
    with pytest.raises(ConfigError, match="cannot read prompt file"):
        load_prompt_file(tmp_path / "missing.toml")
