"""Raw model replies made readable: chat tokens and echoed prompts cut off, JSON found leniently."""

from __future__ import annotations

import ast
import json
import re
from collections import deque
from typing import Any

from visinstruct.core.text.prompts import REPLY_CUE

# Where the model's own turn starts in a reply that echoes the whole chat transcript.
_TURN_STARTS = (
    "[/INST]",
    "<start_of_turn>model",
    "<|im_start|>assistant",
    "<|assistant|>",
    "<|start_header_id|>assistant<|end_header_id|>",
)
# Where a model that keeps going starts writing the next user turn itself.
_TURN_ENDS = (
    "[INST]",
    "<start_of_turn>user",
    "<|im_start|>user",
    "<|user|>",
    "<|start_header_id|>user",
)
_SPECIAL_TOKENS = re.compile(
    r"</?s>|<eos>|<bos>|<end_of_turn>|<\|(?:im_end|eot_id|endoftext|end|im_start|end_header_id)\|>"
)
_CUE_LINE = re.compile(rf"^[ \t]*{re.escape(REPLY_CUE)}[ \t]*$", re.MULTILINE)
_FENCE_LINE = re.compile(r"^[ \t]*```[\w-]*[ \t]*$", re.MULTILINE)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_MAX_STARTS = 200
_MAX_SCANNED = 2_000_000
_MAX_LITERAL = 20_000
_MAX_REPAIRS = 60
_MAX_DEPTH = 100
_MAX_CUTS = 20


def clean_model_text(text: str) -> str:
    """The model's own reply: after any echoed prompt, without chat tokens or code fences."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    # Every marker and token below holds "<" or "INST]", fences "```": plain replies (most
    # JSON) hold none of them and skip those scans.
    has_angle = "<" in text
    if has_angle or "INST]" in text:
        starts = [text.rfind(marker) + len(marker) for marker in _TURN_STARTS if marker in text]
        if starts:
            text = text[max(starts) :]
        ends = [text.find(marker) for marker in _TURN_ENDS if marker in text]
        if ends:
            text = text[: min(ends)]
    if has_angle:
        text = _SPECIAL_TOKENS.sub("", text)
    if REPLY_CUE in text:
        cues = list(_CUE_LINE.finditer(text))
        if cues and text[cues[-1].end() :].strip():
            text = text[cues[-1].end() :]
    if "```" in text:
        text = _FENCE_LINE.sub("", text)
    return text.strip()


def json_values(text: str) -> list[tuple[Any, bool]]:
    """Every JSON object or list in `text`, left to right, as (value, cut_short).

    Trailing commas and single quotes are forgiven; a value cut off at the end of the text is
    closed after its last complete element and comes back with cut_short=True.
    """
    stripped = text.strip()
    if stripped[:1] in ("{", "[") and stripped[-1:] in ("}", "]"):
        # The common case (schema-constrained output): the whole reply is one JSON value,
        # read by the C parser without the character-by-character scan below.
        try:
            return [(json.loads(stripped), False)]
        except ValueError:
            pass
    values: list[tuple[Any, bool]] = []
    position, starts, scanned, repairs = 0, 0, 0, 0
    while starts < _MAX_STARTS and scanned < _MAX_SCANNED:
        start = _next_opening(text, position)
        if start < 0:
            break
        starts += 1
        end, cuts, ran_off = _scan(text, start)
        scanned += (end or len(text)) - start
        if end is not None:
            value = _load(text[start:end])
            if value is not _INVALID:
                values.append((value, False))
                position = end
                continue
        elif ran_off:
            # The text ended inside this value: the reply was cut short; keep its complete part.
            for cut, closers in reversed(cuts):
                if repairs >= _MAX_REPAIRS:
                    break
                repairs += 1
                value = _load(text[start:cut] + closers)
                if value is not _INVALID:
                    values.append((value, True))
                    return values
        position = start + 1
    return values


def ends_inside_json(text: str) -> bool:
    """Whether `text` ends while the JSON value it starts (at its first bracket) is still open."""
    start = _next_opening(text, 0)
    return start >= 0 and _scan(text, start)[2]


class _Invalid:
    """Marks text that no lenient reading turns into JSON."""


_INVALID: Any = _Invalid()


def _next_opening(text: str, position: int) -> int:
    braces = [i for i in (text.find("{", position), text.find("[", position)) if i >= 0]
    return min(braces) if braces else -1


def _scan(text: str, start: int) -> tuple[int | None, list[tuple[int, str]], bool]:
    """End of the bracketed value at `start` (exclusive) or None, where it could be cut, and
    whether the text ran out while it was still open.

    A cut is (index just after an inner value closed, the closers still needed there).
    """
    closing = {"{": "}", "[": "]"}
    stack: list[str] = []
    cuts: deque[tuple[int, str]] = deque(maxlen=_MAX_CUTS)
    quote = ""
    escaped = False
    for index in range(start, len(text)):
        char = text[index]
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in closing:
            if len(stack) >= _MAX_DEPTH:  # no model reply nests this deep; spare the quadratic work
                return None, list(cuts), False
            stack.append(closing[char])
        elif char in "}]":
            if not stack or stack[-1] != char:
                return None, list(cuts), False
            stack.pop()
            if not stack:
                return index + 1, list(cuts), False
            cuts.append((index + 1, "".join(reversed(stack))))
    return None, list(cuts), True


def _load(candidate: str) -> Any:
    """JSON, or JSON with trailing commas, or a Python literal with single quotes; else _INVALID."""
    for attempt in (candidate, _TRAILING_COMMA.sub(r"\1", candidate)):
        try:
            return json.loads(attempt, strict=False)
        except (ValueError, RecursionError):
            pass
    if "'" not in candidate or len(candidate) > _MAX_LITERAL:
        return _INVALID
    literal = re.sub(
        r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", re.sub(r"\bnull\b", "None", candidate))
    )
    try:
        value = ast.literal_eval(literal)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _INVALID
    return value if isinstance(value, (dict, list)) else _INVALID
