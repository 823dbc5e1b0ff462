"""Turn what a model sent back into question-answer pairs, dropping leaks and noting problems."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from visinstruct.core.errors import InputError
from visinstruct.core.records import TASKS, Pair
from visinstruct.core.sanitize.clean import clean_pair_text
from visinstruct.core.text.leaks import drop_leaks, leak_of
from visinstruct.core.text.model_text import clean_model_text, ends_inside_json, json_values

__all__ = ["ParseResult", "leak_of", "parse_pairs"]


@dataclass(frozen=True)
class ParseResult:
    """Pairs found, problems noticed (one line each), and whether the output looked cut off."""

    pairs: tuple[Pair, ...]
    problems: tuple[str, ...]
    truncated: bool


_QUESTION_KEYS = ("question", "q", "human", "user", "query", "prompt", "instruction", "input")
_ANSWER_KEYS = ("answer", "a", "gpt", "assistant", "response", "output", "reply")
_CONTAINER_KEYS = (
    "pairs",
    "conversation",
    "conversations",
    "questions",
    "qa",
    "qas",
    "qa_pairs",
    "dialogue",
    "dialog",
    "turns",
    "messages",
    "items",
    "data",
    "results",
)
_DETAIL_KEYS = (
    "description",
    "detailed_description",
    "detail",
    "text",
    "answer",
    "response",
    "output",
)
_ROLE_KEYS = ("from", "role", "speaker", "author")
_VALUE_KEYS = ("value", "content", "text", "message")
_ASKING_ROLES = {"human", "user", "question", "q", "questioner"}
_ANSWERING_ROLES = {"gpt", "assistant", "model", "ai", "bot", "answer", "a", "chatgpt"}

# A question or answer marker at the start of a line, with the markdown models put around it:
# "Q1:", "**Question 2:**", "1. **Answer:**", "### Question 1", "Human:", "GPT:".
_MARKER = re.compile(
    r"""^\s*(?:\#{1,6}\s*)?(?:>\s*)?(?:[-*•]\s+|\(?\d{1,3}[.)]\s*)?[*_]{0,2}\s*
    (?P<label>question|answer|user|assistant|human|gpt|response|ai|q|a)(?![a-z])
    \s*\#?\s*(?P<num>\d{1,3})?\s*[*_]{0,2}\s*(?P<sep>[:：]|[.)\-–—](?=\s|$))?\s*[*_]{0,2}\s*(?P<rest>.*)$""",
    re.IGNORECASE | re.VERBOSE,
)
_ASKING_LABELS = {"question", "q", "user", "human"}
_FULL_WORD_LABELS = {"question", "answer", "user", "assistant", "human", "gpt", "response"}
# "Question: What is it? Answer: A cat." written on one line.
_INLINE_ANSWER = re.compile(
    r"\s[*_]{0,2}(?:answer|a)\s*\d{0,3}\s*[*_]{0,2}\s*:\s*[*_]{0,2}\s*", re.IGNORECASE
)
_SEPARATOR_LINE = re.compile(r"^\s*(?:={3,}|-{3,}|\*{3,}|_{3,}|~{3,})\s*$")

_REFUSAL = re.compile(
    r"^\W*(?:i'?m sorry|i am sorry|sorry\b|i apologi[sz]e|unfortunately,? i\b|as an ai\b"
    r"|i (?:can ?not|can't|am unable|'m unable|am not able|won't|will not)\b)",
    re.IGNORECASE,
)
_IMAGE_TOKEN = re.compile(r"<image>\s*", re.IGNORECASE)
_DETAIL_PREFIX = re.compile(
    r"^\s*(?:\#{1,6}\s*)?[*_]{0,2}\s*(?:(?:detailed\s+|image\s+)?description|answer|reply|response)"
    r"\s*[*_]{0,2}\s*(?::\s*[*_]{0,2}|\n)\s*",
    re.IGNORECASE,
)
# A description-like key whose string value the text ends inside.
_OPEN_TEXT_VALUE = re.compile(
    r'"(?:description|detailed_description|detail|text|answer|response|output)"\s*:\s*"(.*)',
    re.DOTALL | re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?][\"')\]]?(?=\s|$)")


def parse_pairs(text: str, task: str, *, description_request: str = "") -> ParseResult:
    """Pairs from a model's reply for `task`; never raises on any text.

    For `detail` the reply is one description, returned as the answer to `description_request`.
    """
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    try:
        if task == "detail":
            parsed = _parse_detail(text, description_request)
        else:
            parsed = _parse_conversation(text)
    except Exception as exc:  # noqa: BLE001 - a parser bug must become a failure row, not stop a run
        return ParseResult((), (f"internal parser error: {type(exc).__name__}: {exc}",), False)
    return _cleaned(parsed)


def _cleaned(parsed: ParseResult) -> ParseResult:
    """Pairs without `<image>` tokens or control characters; pairs left empty are dropped."""
    pairs: list[Pair] = []
    problems = [clean_pair_text(p) for p in parsed.problems]
    for number, pair in enumerate(parsed.pairs, 1):
        question, answer = clean_pair_text(pair.question), clean_pair_text(pair.answer)
        if question and answer:
            pairs.append(pair if (question, answer) == pair else Pair(question, answer))
        else:
            problems.append(f"pair {number} dropped: nothing left once <image> tokens and "
                            "control characters were removed")
    return ParseResult(tuple(pairs), tuple(problems), parsed.truncated)


def _parse_conversation(text: str) -> ParseResult:
    cleaned = clean_model_text(text)
    if not cleaned:
        return ParseResult((), ("empty output",), False)
    found = _pairs_from_json(cleaned)
    if found is None or not found[0]:
        from_markers = _pairs_from_markers(cleaned)
        if from_markers[0] or found is None:
            found = from_markers
    pairs, problems, truncated = found
    if not pairs and _REFUSAL.match(cleaned.replace("’", "'")):
        return ParseResult((), (f"the model refused: {_first_line(cleaned)}",), False)
    if not pairs and not problems:
        problems.append(f"no question-answer pairs found in: {_first_line(cleaned)}")
    kept = drop_leaks(pairs, problems)
    return ParseResult(tuple(kept), tuple(problems), truncated)


def _first_line(text: str, limit: int = 120) -> str:
    line = text.strip().split("\n", 1)[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


# --- JSON --------------------------------------------------------------------------------


def _pairs_from_json(text: str) -> tuple[list[Pair], list[str], bool] | None:
    """Pairs from the JSON values in `text`, or None when it holds no JSON with pairs."""
    singles: list[Pair] = []
    best: tuple[list[Pair], list[str], bool] | None = None
    any_truncated = False
    for value, cut_short in json_values(text):
        any_truncated = any_truncated or cut_short
        pairs, problems, dangling = _pairs_from_value(value)
        if not pairs:
            continue
        # One pair per JSON value (JSON lines) adds up; a whole container replaces an echoed one.
        if _is_single_pair(value) and not cut_short:
            singles.extend(pairs)
        else:
            best = (pairs, problems, cut_short or dangling)
    if best is not None:
        return best
    if singles:
        return singles, [], False
    if any_truncated or ends_inside_json(text):
        return [], ["the JSON reply was cut off before its first pair ended"], True
    return None


def _is_single_pair(value: Any) -> bool:
    return isinstance(value, dict) and _pair_from_item(value) is not None


def _pairs_from_value(value: Any, depth: int = 0) -> tuple[list[Pair], list[str], bool]:
    """Pairs in a decoded JSON value: (pairs, problems, last question unanswered)."""
    if depth > 4:
        return [], [], False
    if isinstance(value, dict):
        single = _pair_from_item(value)
        if single is not None:
            return [single], [], False
        lowered = {str(k).lower(): v for k, v in value.items()}
        questions, answers = lowered.get("questions"), lowered.get("answers")
        if (
            isinstance(questions, list)
            and isinstance(answers, list)
            and all(isinstance(x, str) for x in questions + answers)
        ):
            pairs = [
                Pair(q.strip(), a.strip())
                for q, a in zip(questions, answers, strict=False)
                if q.strip() and a.strip()
            ]
            return pairs, [], len(questions) > len(answers)
        for key in _CONTAINER_KEYS:
            if isinstance(lowered.get(key), (list, dict)):
                found = _pairs_from_value(lowered[key], depth + 1)
                if found[0]:
                    return found
        lists = [v for v in value.values() if isinstance(v, list)]
        return _pairs_from_value(lists[0], depth + 1) if len(lists) == 1 else ([], [], False)
    if isinstance(value, list):
        if value and all(isinstance(item, dict) and _role_of(item) for item in value):
            return _pairs_from_turns(value)
        pairs = []
        for item in value:
            pair = _pair_from_item(item)
            if pair is None and isinstance(item, list) and len(item) == 2:
                pair = _pair_from_texts(item[0], item[1])
            if pair is not None:
                pairs.append(pair)
        return pairs, [], False
    return [], [], False


def _pair_from_item(item: Any) -> Pair | None:
    """A pair from one dict with question/answer-like keys."""
    if not isinstance(item, dict):
        return None
    lowered = {str(k).lower(): v for k, v in item.items()}
    question = next((lowered[k] for k in _QUESTION_KEYS if k in lowered), None)
    answer = next((lowered[k] for k in _ANSWER_KEYS if k in lowered), None)
    return _pair_from_texts(question, answer)


def _pair_from_texts(question: Any, answer: Any) -> Pair | None:
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    if not isinstance(question, str) or not isinstance(answer, str):
        return None
    question, answer = _IMAGE_TOKEN.sub("", question).strip(), answer.strip()
    return Pair(question, answer) if question and answer else None


def _role_of(item: dict[Any, Any]) -> str:
    """'q' or 'a' for a chat turn such as {"from": "human", "value": ...}, else ''."""
    lowered = {str(k).lower(): v for k, v in item.items()}
    role = next((lowered[k] for k in _ROLE_KEYS if isinstance(lowered.get(k), str)), "")
    role = role.strip().lower()
    return "q" if role in _ASKING_ROLES else "a" if role in _ANSWERING_ROLES else ""


def _pairs_from_turns(turns: list[dict[Any, Any]]) -> tuple[list[Pair], list[str], bool]:
    segments = []
    for turn in turns:
        lowered = {str(k).lower(): v for k, v in turn.items()}
        content = next((lowered[k] for k in _VALUE_KEYS if isinstance(lowered.get(k), str)), "")
        segments.append((_role_of(turn), content))
    return _pair_segments(segments)


# --- Question:/Answer: text ------------------------------------------------------------------


def _pairs_from_markers(text: str) -> tuple[list[Pair], list[str], bool]:
    """Pairs from text with question and answer markers on their lines."""
    segments: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    for line in text.split("\n"):
        if _SEPARATOR_LINE.match(line):
            current = None
            continue
        role, rest = _marker_of(line)
        inline = _INLINE_ANSWER.search(rest) if role == "q" else None
        if inline:
            segments.append(("q", [rest[: inline.start()]]))
            role, rest = "a", rest[inline.end() :]
        if role:
            current = [rest] if rest else []
            segments.append((role, current))
        elif current is not None:
            current.append(line.rstrip())
    return _pair_segments([(role, _join_lines(lines)) for role, lines in segments])


def _marker_of(line: str) -> tuple[str, str]:
    """('q' | 'a', text after the marker) when `line` starts with a marker, else ('', '')."""
    match = _MARKER.match(line)
    if match is None:
        return "", ""
    label, num, sep, rest = (match.group(g) for g in ("label", "num", "sep", "rest"))
    label = label.lower()
    rest = rest.strip() if rest.strip("*_ ") else ""  # "**Question**" leaves only its closing **
    is_marker = (
        sep in (":", "：")
        or (bool(sep) and bool(num))
        or (not rest and (bool(num) or label in _FULL_WORD_LABELS))
    )
    if not is_marker:
        return "", ""
    return ("q" if label in _ASKING_LABELS else "a"), rest


def _join_lines(lines: list[str]) -> str:
    text = "\n".join(lines).strip()
    return re.sub(r"\n\s*\n(?:\s*\n)+", "\n\n", text)


def _pair_segments(segments: list[tuple[str, str]]) -> tuple[list[Pair], list[str], bool]:
    """Pair each question with the answer right after it; note the odd ones out."""
    pairs: list[Pair] = []
    problems: list[str] = []
    pending: str | None = None
    for role, content in segments:
        content = content.strip()
        if role == "q":
            if pending is not None:
                problems.append(f"question without an answer dropped: {_first_line(pending, 80)}")
            pending = _IMAGE_TOKEN.sub("", content).strip() or None
        elif role == "a":
            if pending is None:
                if content:
                    problems.append(
                        f"answer without a question ignored: {_first_line(content, 80)}"
                    )
            elif content:
                pairs.append(Pair(pending, content))
                pending = None
    truncated = pending is not None
    if truncated:
        problems.append(
            f"last question had no answer (output cut off?): {_first_line(pending or '', 80)}"
        )
    return pairs, problems, truncated


# --- detail ----------------------------------------------------------------------------------


def _parse_detail(text: str, request: str) -> ParseResult:
    cleaned = clean_model_text(text)
    if not cleaned:
        return ParseResult((), ("empty output",), False)
    problems: list[str] = []
    description, truncated = _description_from_json(cleaned)
    if description is None and _is_json_reply(cleaned):
        # A JSON reply with no description in it: never keep the JSON text itself as one.
        cut = ends_inside_json(cleaned)
        reason = "was cut off before a description" if cut else "holds no description"
        return ParseResult((), (f"the JSON reply {reason}: {_first_line(cleaned)}",), cut)
    if description is None:
        pairs = _pairs_from_markers(cleaned)[0]
        description = pairs[0].answer if pairs else _DETAIL_PREFIX.sub("", cleaned, count=1)
        description = description.strip().strip('"').strip()
    if _REFUSAL.match(description.replace("’", "'")):
        return ParseResult((), (f"the model refused: {_first_line(description)}",), truncated)
    if not _looks_like_prose(description):
        return ParseResult((), (f"no description found in: {_first_line(cleaned)}",), truncated)
    if not re.search(r"[.!?][\"')\]]?$", description):
        ends = list(_SENTENCE_END.finditer(description))
        if ends:
            description = description[: ends[-1].end()]
        problems.append("the description was cut off; kept its complete sentences")
        truncated = True
    kept = drop_leaks([Pair(request, description)], problems)
    return ParseResult(tuple(kept), tuple(problems), truncated)


def _description_from_json(text: str) -> tuple[str | None, bool]:
    """The description in a JSON reply and whether the JSON was cut off; (None, False) if none."""
    for value, cut_short in reversed(json_values(text)):
        found = _description_in(value)
        if found:
            return found, cut_short
    # A JSON string cut off mid-way never closes; take what there is of the last one opened.
    opened = list(_OPEN_TEXT_VALUE.finditer(text))
    if opened and '"' not in opened[-1].group(1).replace('\\"', ""):
        return opened[-1].group(1).replace('\\"', '"').replace("\\n", "\n").strip(), True
    return None, False


def _is_json_reply(text: str) -> bool:
    """Whether `text` is (or holds) structured JSON, not prose with a bracket or two."""
    if text[:1] == "{" or (text[:1] == "[" and ends_inside_json(text)):
        return True
    return any(isinstance(value, dict) or (isinstance(value, list) and any(
        isinstance(item, (dict, list)) for item in value)) for value, _ in json_values(text))


def _description_in(value: Any) -> str | None:
    if isinstance(value, dict):
        lowered = {str(k).lower(): v for k, v in value.items()}
        for key in _DETAIL_KEYS:
            if isinstance(lowered.get(key), str) and lowered[key].strip():
                return str(lowered[key]).strip()
    pairs = _pairs_from_value(value)[0]
    return pairs[0].answer if pairs else None


def _looks_like_prose(text: str) -> bool:
    words = re.findall(r"[^\W\d_]{2,}", text)
    letters = sum(map(str.isalpha, text))
    visible = len(text) - sum(map(str.isspace, text))
    return len(words) >= 5 and visible > 0 and letters / visible >= 0.6
