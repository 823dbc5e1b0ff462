"""Read scores out of judge and evaluator replies, in the many shapes real models write them."""

from __future__ import annotations

import re
from typing import Any

from visinstruct.core.records import Judgement, Verdict
from visinstruct.core.sanitize.clean import clean_pair_text
from visinstruct.core.text.model_text import clean_model_text, json_values

_NUMBER = r"(\d{1,3}(?:\.\d+)?)"
# "/10" or "out of 10" after a score, and what may not follow a score ("2x", "8.5.1", "3rd").
_OUT_OF = r"(?:\s*/\s*10(?:\.0)?|\s+out\s+of\s+10)?"
_END = r"(?![\w.]*\d|[a-zA-Z])"
_LABEL = r"(?:pair|question|q|qa|item|assistant|answer|response|no\.?|number|#)"
_SCORE_WORD = r"(?:final\s+|overall\s+)?(?:score|rating|grade|rated|scored)"

# "Pair 2 - 6/10", "Q3 score: 9", "1: 8", "Assistant 1: 10": an index, then maybe the score.
_INDEXED = re.compile(
    rf"^[\s>•\-*]*(?:(?P<label>{_LABEL})\s*#?\s*(?P<num>\d{{1,3}})\b|(?P<bare>\d{{1,3}})\s*(?=[:.)\-–—]))"
    r"(?P<rest>.*)$",
    re.IGNORECASE,
)
_DIRECT = re.compile(
    rf"^\s*(?:\([^)]*\))?\s*(?:[:.)\-–—=|]\s*)?(?:{_SCORE_WORD}\s*(?:[:=\-–]|is|of)?\s*)?"
    rf"{_NUMBER}{_OUT_OF}{_END}(?P<reason>.*)$",
    re.IGNORECASE,
)
_SCORE_IN_LINE = re.compile(
    rf"{_SCORE_WORD}\s*(?:[:=\-–]|is|of)?\s*{_NUMBER}{_OUT_OF}{_END}(?P<reason>.*)$", re.IGNORECASE
)
_TRAILING = re.compile(rf"[:=\-–—]\s*{_NUMBER}{_OUT_OF}\s*$")
_HEADER = re.compile(r"^\s*(?:[:.)\-–—]\s*.*)?$")
_UNLABELLED = re.compile(
    rf"^[\s>•\-*]*{_SCORE_WORD}\s*(?:[:=\-–]|is)?\s*{_NUMBER}{_OUT_OF}{_END}(?P<reason>.*)$",
    re.IGNORECASE,
)
_SCORE_FOR = re.compile(
    rf"{_SCORE_WORD}\s+(?:for|of)\s+{_LABEL}\s*#?\s*(\d{{1,3}})\s*(?:[:=\-–—]|is)\s*{_NUMBER}{_OUT_OF}{_END}",
    re.IGNORECASE,
)
_NUMBERS_LINE = re.compile(r"^\s*\d{1,3}(?:\.\d+)?(?:\s*[,;\s]\s*\d{1,3}(?:\.\d+)?)*\s*$")
_VERDICT_LINE = re.compile(
    rf"^\s*(?:scores?\s*[:=]?\s*)?{_NUMBER}{_OUT_OF}\s*(?:[,;]|\s|and|vs\.?)\s*{_NUMBER}{_OUT_OF}\s*\.?\s*$",
    re.IGNORECASE,
)
_ASSISTANT_SCORE = (
    r"assistant\s*#?\s*{n}\b\W{{0,3}}(?:'s)?\s*(?:{word}\s*)?(?:[:=\-–—(]|is|of)?\s*[*_]{{0,2}}\s*"
    r"{num}{out}{end}"
)
_MARKDOWN = re.compile(r"\*\*|__|`|^\s*#{1,6}\s*", re.MULTILINE)
_INDEX_KEYS = ("index", "pair", "id", "question", "q", "number", "n", "pair_index", "idx")
_SCORE_KEYS = ("score", "rating", "grade", "value", "points")
_REASON_KEYS = ("reason", "rationale", "explanation", "comment", "justification", "why")
_LIST_KEYS = (
    "scores",
    "ratings",
    "judgements",
    "judgments",
    "results",
    "pairs",
    "evaluations",
    "items",
)


def parse_judgement(text: str, n_pairs: int) -> tuple[Judgement, ...]:
    """One Judgement per pair 1..n_pairs; score None where no readable 1..10 score is given."""
    cleaned = clean_model_text(text)
    scores: dict[int, tuple[float | None, str]] = {}
    for reader in (_judgement_from_json, _judgement_from_first_line, _judgement_from_lines):
        scores = reader(cleaned, n_pairs)
        if any(score is not None for score, _ in scores.values()):
            break
    # Reasons are stored and shown: cleaned as answers are (a "\ud800" escape in the model's
    # JSON decodes to a lone surrogate, which SQLite cannot encode; ESC, NUL, <image>).
    return tuple(
        Judgement(index, score, clean_pair_text(reason))
        for index in range(1, max(n_pairs, 0) + 1)
        for score, reason in (scores.get(index, (None, "")),)
    )


def _in_range(value: Any) -> float | None:
    """A score as a float when it is a number (or numeric text like '8/10') within 1..10."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        match = re.fullmatch(rf"\s*{_NUMBER}{_OUT_OF}\s*", value)
        value = float(match.group(1)) if match else None
    if isinstance(value, (int, float)) and 1 <= value <= 10:
        return float(value)
    return None


def _reason(text: str) -> str:
    return text.strip().strip("-–—:;,.|()* ").strip()


# --- judge: JSON --------------------------------------------------------------------------------


def _judgement_from_json(text: str, n_pairs: int) -> dict[int, tuple[float | None, str]]:
    for value, _ in reversed(json_values(text)):
        found = _scores_in(value, n_pairs, 0)
        if found:
            return found
    return {}


def _scores_in(value: Any, n_pairs: int, depth: int) -> dict[int, tuple[float | None, str]]:
    if depth > 3:
        return {}
    if isinstance(value, dict):
        lowered = {str(k).lower(): v for k, v in value.items()}
        for key in _LIST_KEYS:
            if isinstance(lowered.get(key), (list, dict)):
                inner = _scores_in(lowered[key], n_pairs, depth + 1)
                if inner:
                    return inner
        single = _item_score(lowered, 1)
        if single is not None:
            return dict([single])
        # {"1": 8, "pair_2": 6}: the keys carry the index.
        keyed: dict[int, tuple[float | None, str]] = {}
        for key, item in lowered.items():
            digits = re.search(r"(\d+)$", key)
            if digits and not isinstance(item, (list, dict)):
                keyed[int(digits.group(1))] = (_in_range(item), "")
        return keyed
    if isinstance(value, list):
        found: dict[int, tuple[float | None, str]] = {}
        for position, item in enumerate(value, 1):
            if isinstance(item, dict):
                entry = _item_score({str(k).lower(): v for k, v in item.items()}, position)
            else:
                entry = (
                    (position, (_in_range(item), ""))
                    if isinstance(item, (int, float, str))
                    else None
                )
            if entry is not None and entry[0] not in found:
                found[entry[0]] = entry[1]
        return found
    return {}


def _item_score(item: dict[str, Any], position: int) -> tuple[int, tuple[float | None, str]] | None:
    """(index, (score, reason)) from one {"index": 1, "score": 8, "reason": ...} item."""
    key = next((k for k in _SCORE_KEYS if k in item), None)
    if key is None:
        return None
    index_value = next((item[k] for k in _INDEX_KEYS if k in item), position)
    index = _as_index(index_value, position)
    reason = next((str(item[k]) for k in _REASON_KEYS if isinstance(item.get(k), str)), "")
    return index, (_in_range(item[key]), reason.strip())


def _as_index(value: Any, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    digits = re.search(r"\d+", value) if isinstance(value, str) else None
    return int(digits.group()) if digits else default


# --- judge: text ---------------------------------------------------------------------------


def _judgement_from_first_line(text: str, n_pairs: int) -> dict[int, tuple[float | None, str]]:
    """'9 8.5' on the first line, as in GPT-4 review files; the reason is the next line."""
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines or not _NUMBERS_LINE.match(lines[0]):
        return {}
    numbers = re.findall(_NUMBER, lines[0])
    if len(numbers) > n_pairs:
        return {}
    reason = _reason(lines[1]) if len(lines) > 1 else ""
    return {index: (_in_range(float(n)), reason) for index, n in enumerate(numbers, 1)}


def _judgement_from_lines(text: str, n_pairs: int) -> dict[int, tuple[float | None, str]]:
    """Scores on lines labelled with a pair number, or 'Score: 7' lines under a pair heading."""
    found: dict[int, tuple[float | None, str]] = {}
    current: int | None = None
    for raw_line in _MARKDOWN.sub("", text).split("\n"):
        line = raw_line.strip()
        if not line:
            continue
        indexed = _INDEXED.match(line)
        if indexed:
            index = int(indexed.group("num") or indexed.group("bare"))
            rest = indexed.group("rest")
            score = _score_in_rest(rest)
            if score is not None:
                if 1 <= index <= n_pairs and index not in found:
                    found[index] = score
                continue
            if indexed.group("label") or _HEADER.match(rest) or rest[:1] in ":.)-–—":
                current = index
                continue
        labelled = _SCORE_FOR.search(line)
        if labelled:
            index = int(labelled.group(1))
            if 1 <= index <= n_pairs and index not in found:
                found[index] = (_in_range(float(labelled.group(2))), "")
            continue
        unlabelled = _UNLABELLED.match(line)
        if unlabelled:
            target = (
                current
                if current is not None and current not in found
                else _next_free(found, n_pairs)
            )
            if target is not None and 1 <= target <= n_pairs and target not in found:
                found[target] = (
                    _in_range(float(unlabelled.group(1))),
                    _reason(unlabelled.group("reason")),
                )
    return found


def _score_in_rest(rest: str) -> tuple[float | None, str] | None:
    """The score (and reason) written after a pair number on the same line, if any."""
    for pattern in (_DIRECT, _SCORE_IN_LINE):
        match = pattern.search(rest) if pattern is _SCORE_IN_LINE else pattern.match(rest)
        if match:
            return _in_range(float(match.group(1))), _reason(match.group("reason"))
    trailing = _TRAILING.search(rest)
    if trailing:
        return _in_range(float(trailing.group(1))), _reason(rest[: trailing.start()])
    return None


def _next_free(found: dict[int, Any], n_pairs: int) -> int | None:
    return next((i for i in range(1, n_pairs + 1) if i not in found), None)


# --- evaluator -------------------------------------------------------------------------------


def parse_verdict(text: str) -> Verdict:
    """Assistant 1's and Assistant 2's scores and the rationale; unparsed unless both are 1..10."""
    cleaned = clean_model_text(text)
    for reader in (_verdict_from_first_line, _verdict_from_json, _verdict_from_labels):
        found = reader(cleaned)
        if found is not None:
            first, second, rationale = found
            if _in_range(first) is None or _in_range(second) is None:
                return Verdict(None, None, clean_pair_text(cleaned))
            return Verdict(float(first), float(second), clean_pair_text(rationale))
    return Verdict(None, None, clean_pair_text(cleaned))


_Found = tuple[float, float, str] | None


def _verdict_from_first_line(text: str) -> _Found:
    lines = text.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return None
    match = _VERDICT_LINE.match(_MARKDOWN.sub("", lines[first]))
    if match is None:
        return None
    return float(match.group(1)), float(match.group(2)), "\n".join(lines[first + 1 :]).strip()


def _verdict_from_json(text: str) -> _Found:
    for value, _ in reversed(json_values(text)):
        scores = _two_scores(value)
        if scores is not None:
            lowered = (
                {str(k).lower(): v for k, v in value.items()} if isinstance(value, dict) else {}
            )
            rationale = next(
                (str(lowered[k]) for k in _REASON_KEYS if isinstance(lowered.get(k), str)), ""
            )
            return scores[0], scores[1], rationale.strip()
    return None


def _two_scores(value: Any) -> tuple[float, float] | None:
    if isinstance(value, list) and len(value) == 2:
        numbers = [_number(v) for v in value]
        if numbers[0] is not None and numbers[1] is not None:
            return numbers[0], numbers[1]
    if not isinstance(value, dict):
        return None
    lowered = {re.sub(r"[\s_\-]+", "", str(k).lower()): v for k, v in value.items()}
    for key in ("scores", "score", "ratings"):
        if key in lowered:
            inner = _two_scores(lowered[key])
            if inner is not None:
                return inner
    for one, two in (
        ("assistant1", "assistant2"),
        ("score1", "score2"),
        ("first", "second"),
        ("a1", "a2"),
    ):
        if one in lowered and two in lowered:
            first, second = _number(lowered[one]), _number(lowered[two])
            if first is not None and second is not None:
                return first, second
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        match = re.fullmatch(rf"\s*{_NUMBER}{_OUT_OF}\s*", value)
        return float(match.group(1)) if match else None
    if isinstance(value, dict):
        inner = {str(k).lower(): v for k, v in value.items()}
        return next((_number(inner[k]) for k in _SCORE_KEYS if k in inner), None)
    return None


def _verdict_from_labels(text: str) -> _Found:
    """'Assistant 1: 8' and 'Assistant 2: 6' anywhere; the last mention of each wins."""
    plain = _MARKDOWN.sub("", text)
    scores = []
    for number in ("1", "2"):
        pattern = _ASSISTANT_SCORE.format(
            n=number, word=_SCORE_WORD, num=_NUMBER, out=_OUT_OF, end=_END
        )
        matches = list(re.finditer(pattern, plain, re.IGNORECASE))
        if not matches:
            return None
        scores.append(float(matches[-1].group(1)))
    return scores[0], scores[1], text.strip()
