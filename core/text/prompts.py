"""Prompt templates: load and validate the packaged TOML files, and render them into messages."""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.resources
import re
import tomllib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visinstruct.core.errors import ConfigError
from visinstruct.core.models.backends.base import Message
from visinstruct.core.records import FACT_TASKS, TASKS, Image, Pair
from visinstruct.core.text.context import render_context

PROMPT_TASKS: tuple[str, ...] = (*TASKS, "judge", "evaluate", "answer", *FACT_TASKS)

# The last line of every user message; a model that echoes its prompt is cut after it.
REPLY_CUE = "Reply:"

_REQUIRED: dict[str, type] = {
    "name": str,
    "task": str,
    "system": str,
    "instruction": str,
    "include_boxes": bool,
    "output_format": str,
}
_OPTIONAL: dict[str, type] = {"examples": list, "description_requests": list,
                              "scene_graph_guide": str, "facts_guide": str}
_EXAMPLE_KEYS: tuple[str, ...] = ("context", "output")
_TYPE_NAMES: dict[type, str] = {str: "a string", bool: "true or false", list: "a list"}
_IMAGE_TOKEN = re.compile(r"<image>\s*")


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt file, validated; `text` is the exact TOML it was loaded from."""

    name: str
    task: str
    system: str
    instruction: str
    output_format: str
    include_boxes: bool
    examples: tuple[tuple[str, str], ...]
    description_requests: tuple[str, ...]
    text: str
    # Said only when the image has a scene graph / known answers, so the model uses them.
    scene_graph_guide: str = ""
    facts_guide: str = ""

    @functools.cached_property
    def version(self) -> str:
        """First 12 hex digits of the sha256 of the normalised TOML text."""
        return prompt_version(self.text)


def prompt_version(text: str) -> str:
    """Content hash of prompt text that ignores trailing whitespace and line-ending style."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    canonical = "\n".join(line.rstrip() for line in lines).strip("\n") + "\n"
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def available_prompts() -> tuple[str, ...]:
    """Names of the prompt files packaged with visinstruct."""
    folder = importlib.resources.files("visinstruct.prompts")
    return tuple(
        sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))
    )


def load_prompt(name: str) -> PromptTemplate:
    """Load the packaged prompt `name` (e.g. "conversation") from visinstruct/prompts."""
    known = available_prompts()
    if name not in known:
        hint = _nearest(name, known)
        raise ConfigError(f"no prompt named {name!r}{hint}; packaged prompts: {', '.join(known)}")
    resource = importlib.resources.files("visinstruct.prompts").joinpath(f"{name}.toml")
    return parse_prompt(resource.read_text(encoding="utf-8"), source=f"prompts/{name}.toml")


def load_prompt_file(path: Path) -> PromptTemplate:
    """Load a user's own prompt file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read prompt file ({exc.strerror}); check the path"
        ) from exc
    return parse_prompt(text, source=str(path))


def parse_prompt(text: str, source: str = "<text>") -> PromptTemplate:
    """Validate prompt TOML text; errors name `source`, the key and the fix."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc}); fix the syntax") from exc
    known_keys = (*_REQUIRED, *_OPTIONAL)
    for key in data:
        if key not in known_keys:
            raise ConfigError(f"{source}: unknown key {key!r}{_nearest(key, known_keys)}")
    for key, expected in _REQUIRED.items():
        if key not in data:
            raise ConfigError(
                f"{source}: missing key {key!r}; add it (it must be {_TYPE_NAMES[expected]})"
            )
    for key, expected in {**_REQUIRED, **_OPTIONAL}.items():
        if key in data and not isinstance(data[key], expected):
            raise ConfigError(
                f"{source}: key {key!r} must be {_TYPE_NAMES[expected]}, "
                f"not {type(data[key]).__name__}"
            )
    task = data["task"]
    if task not in PROMPT_TASKS:
        raise ConfigError(
            f"{source}: task {task!r} is not one of {', '.join(PROMPT_TASKS)}"
            f"{_nearest(task, PROMPT_TASKS)}"
        )
    examples = tuple(
        _example(item, n, source) for n, item in enumerate(data.get("examples", []), 1)
    )
    requests = data.get("description_requests", [])
    if not all(isinstance(r, str) and r.strip() for r in requests):
        raise ConfigError(
            f"{source}: every entry of 'description_requests' must be a non-empty string"
        )
    if task == "detail" and not requests:
        raise ConfigError(
            f"{source}: a detail prompt needs 'description_requests' = [\"...\", ...]"
        )
    return PromptTemplate(
        name=data["name"],
        task=task,
        system=data["system"].strip(),
        instruction=data["instruction"].strip(),
        output_format=data["output_format"].strip(),
        include_boxes=data["include_boxes"],
        examples=examples,
        description_requests=tuple(r.strip() for r in requests),
        text=text,
        scene_graph_guide=data.get("scene_graph_guide", "").strip(),
        facts_guide=data.get("facts_guide", "").strip(),
    )


def _example(item: Any, number: int, source: str) -> tuple[str, str]:
    """Validate one [[examples]] table into (context, output)."""
    if not isinstance(item, dict):
        raise ConfigError(f"{source}: examples entry {number} must be a [[examples]] table")
    for key in item:
        if key not in _EXAMPLE_KEYS:
            raise ConfigError(
                f"{source}: unknown key {key!r} in examples entry {number}"
                f"{_nearest(key, _EXAMPLE_KEYS)}"
            )
    for key in _EXAMPLE_KEYS:
        if not isinstance(item.get(key), str):
            raise ConfigError(f'{source}: examples entry {number} needs {key} = "..." (a string)')
    return item["context"].strip(), item["output"].strip()


def _nearest(word: str, choices: Sequence[str]) -> str:
    """A '; did you mean ...?' hint, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def _header(template: PromptTemplate, image: Image) -> list[str]:
    """Instruction, what this image's context holds, reply format and worked examples."""
    parts = [template.instruction]
    if image.objects and template.scene_graph_guide:
        parts.append(template.scene_graph_guide)
    if image.facts and template.facts_guide:
        parts.append(template.facts_guide)
    parts.append(f"Reply format: {template.output_format}")
    for context, output in template.examples:
        parts.append(f"Example\nContext:\n{context}\n{REPLY_CUE}\n{output}")
    return parts


def _messages(
    template: PromptTemplate, parts: list[str], images: tuple[bytes, ...] = ()
) -> tuple[Message, ...]:
    user = "\n\n".join(p for p in parts if p) + f"\n{REPLY_CUE}"
    return (Message("system", template.system), Message("user", user, images))


# The tasks with a version for models shown the picture (packaged as `<task>_vision.toml`).
SEEING_TASKS: tuple[str, ...] = ("conversation", "detail", "complex_reasoning", "judge")


def prompt_name(task: str, *, sees: bool) -> str:
    """The packaged prompt a stage uses: the vision version when its model is shown the picture."""
    return f"{task}_vision" if sees and task in SEEING_TASKS else task


def generation_messages(template: PromptTemplate, image: Image,
                        picture: bytes | None = None) -> tuple[Message, ...]:
    """System and user messages asking for pairs (or a description) about `image`; the
    picture, when given, goes with the user message."""
    context = render_context(image, template.include_boxes)
    return _messages(template, [*_header(template, image), f"Context:\n{context}"],
                     (picture,) if picture else ())


def judge_messages(
    template: PromptTemplate, image: Image, pairs: Sequence[Pair], picture: bytes | None = None
) -> tuple[Message, ...]:
    """Messages asking for one score per pair, numbered 1..n (with the picture when given)."""
    context = render_context(image, template.include_boxes)
    numbered = "\n\n".join(
        f"Pair {n}\nQuestion: {_clean_question(p.question)}\nAnswer: {p.answer.strip()}"
        for n, p in enumerate(pairs, 1)
    )
    return _messages(template, [*_header(template, image), f"Context:\n{context}",
                                f"Pairs:\n{numbered}"], (picture,) if picture else ())


def evaluation_messages(
    template: PromptTemplate,
    image: Image,
    request_text: str,
    first: str,
    second: str,
    *,
    picture: bytes | None = None,
) -> tuple[Message, ...]:
    """Messages asking a reviewer to score two responses; `picture` is attached when given."""
    context = render_context(image, template.include_boxes)
    parts = [
        *_header(template, image),
        f"Context:\n{context}",
        f"User request:\n{_clean_question(request_text)}",
        f"Response of Assistant 1:\n{first.strip()}\n(end of Assistant 1)",
        f"Response of Assistant 2:\n{second.strip()}\n(end of Assistant 2)",
    ]
    return _messages(template, parts, (picture,) if picture else ())


def answer_messages(template: PromptTemplate, image: Image, question: str) -> tuple[Message, ...]:
    """Messages asking the model to answer one question about `image`."""
    context = render_context(image, template.include_boxes)
    return _messages(
        template,
        [*_header(template, image), f"Context:\n{context}",
         f"Question: {_clean_question(question)}"],
    )


def _clean_question(text: str) -> str:
    """Drop the `<image>` token that LLaVA records put in the first question."""
    return _IMAGE_TOKEN.sub("", text).strip()


def pick_description_request(template: PromptTemplate, image_id: int) -> str:
    """The question of `image_id`'s detail pair; the same on every run."""
    if not template.description_requests:
        raise ConfigError(f"prompt {template.name!r} has no 'description_requests' to pick from")
    index = zlib.crc32(str(image_id).encode("ascii")) % len(template.description_requests)
    return template.description_requests[index]


_PAIRS_ITEMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 1},
        "answer": {"type": "string", "minLength": 1},
    },
    "required": ["question", "answer"],
    "additionalProperties": False,
}

GENERATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"pairs": {"type": "array", "minItems": 1, "maxItems": 8, "items": _PAIRS_ITEMS}},
    "required": ["pairs"],
    "additionalProperties": False,
}

DETAIL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"description": {"type": "string", "minLength": 1}},
    "required": ["description"],
    "additionalProperties": False,
}

JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "scores": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer", "minimum": 1},
                    "score": {"type": "integer", "minimum": 1, "maximum": 10},
                    "reason": {"type": "string"},
                },
                "required": ["index", "score", "reason"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["scores"],
    "additionalProperties": False,
}


def output_schema(template: PromptTemplate) -> dict[str, Any] | None:
    """The JSON schema that constrains `template`'s output, or None for free text."""
    return {
        "conversation": GENERATION_SCHEMA,
        "complex_reasoning": GENERATION_SCHEMA,
        "detail": DETAIL_SCHEMA,
        "judge": JUDGE_SCHEMA,
    }.get(template.task)
