"""Strict checks that a record (or a whole written file) has the exact mix665k shape."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from visinstruct.core.errors import ExportError
from visinstruct.dataset.mix_parts import COCO_PREFIX, GQA_PREFIX, IMAGE_TOKEN

LLAVA_KEYS: frozenset[str] = frozenset({"id", "image", "conversations"})
HUMAN, GPT = "human", "gpt"

# Rule ids are part of the contract: error messages, reports and tests name them.
RULES: dict[str, str] = {
    "id-format": "id is a string of exactly 12 digits (for a GQA image: its GQA id)",
    "image-path": "image is coco/train2017/<12 digits>.jpg or gqa/images/<GQA id>.jpg "
                  "and agrees with id",
    "keys": "the record has exactly the keys id, image, conversations",
    "turn-shape": "conversations is a list of objects with exactly the keys from and value",
    "turn-roles": "each turn's from is human or gpt",
    "alternation": "turns start with human, alternate, end with gpt, even count >= 2",
    "image-token": "<image> appears once, at the start of the first human value, then a newline",
    "empty-text": "no value is empty or whitespace once <image> is removed",
    "text-type": "each value is a string that UTF-8 can encode",
}
FILE_RULES: dict[str, str] = {
    "json-syntax": "the file is well-formed UTF-8 JSON",
    "top-level": "the file holds one JSON array of records",
}

_ID_PATTERN = re.compile(r"[0-9]{12}")
_IMAGE_PATTERN = re.compile(re.escape(COCO_PREFIX) + r"([0-9]{12})\.jpg")
# GQA ids are Visual Genome numbers, or an "n" and digits for its other images.
_GQA_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,40}")
_GQA_IMAGE_PATTERN = re.compile(re.escape(GQA_PREFIX) + r"([A-Za-z0-9_-]{1,40})\.jpg")
_SHOWN_CHARS = 60


@dataclass(frozen=True)
class RuleViolation:
    """One broken rule in one record: the rule id and what exactly is wrong."""

    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.detail}"


@dataclass(frozen=True)
class RecordProblem:
    """A violation located in a file: the record's 0-based index and its id (if readable)."""

    index: int
    record_id: str
    violation: RuleViolation

    @property
    def rule(self) -> str:
        return self.violation.rule

    def __str__(self) -> str:
        where = f"record {self.index}" + (f" (id {self.record_id})" if self.record_id else "")
        return f"{where}: {self.violation}"


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of checking a written llava file; `problems` keeps the first few only."""

    path: Path
    records: int
    problem_count: int
    problems: tuple[RecordProblem, ...] = ()
    rule_counts: Mapping[str, int] = field(default_factory=dict, hash=False)

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def summary(self) -> str:
        """One line for a terminal: the verdict and the count of each broken rule."""
        if self.ok:
            return f"{self.path}: {self.records} records, all valid"
        counts = ", ".join(f"{rule} x{n}" for rule, n in sorted(self.rule_counts.items()))
        return f"{self.path}: {self.records} records, {self.problem_count} problems ({counts})"


def shown(value: Any) -> str:
    """A short printable form of a bad value, so one giant string cannot flood a message."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def check_record(record: Any) -> list[RuleViolation]:
    """Every rule a llava record breaks; a rule that depends on a broken one is not repeated."""
    if not isinstance(record, dict):
        return [RuleViolation("keys", f"the record is not an object but {type(record).__name__}")]
    violations: list[RuleViolation] = []
    missing = sorted(LLAVA_KEYS - record.keys())
    extra = sorted(str(key) for key in record.keys() - LLAVA_KEYS)
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(extra)}"] if extra else []
        )
        violations.append(RuleViolation("keys", "; ".join(parts)))
    violations += _check_id_and_image(record)
    if "conversations" in record:
        violations += _check_conversations(record["conversations"])
    return violations


def validate_record(record: Any) -> list[str]:
    """Problems with one llava record, each written as '<rule-id>: <what is wrong>'."""
    return [str(violation) for violation in check_record(record)]


def _check_id_and_image(record: dict[str, Any]) -> list[RuleViolation]:
    image = record.get("image")
    if isinstance(image, str) and image.startswith("gqa/"):
        return _check_gqa_id_and_image(record, image)
    violations: list[RuleViolation] = []
    record_id = record.get("id")
    id_ok = isinstance(record_id, str) and _ID_PATTERN.fullmatch(record_id) is not None
    if "id" in record and not id_ok:
        violations.append(
            RuleViolation("id-format", f"id must be a string of 12 digits, got {shown(record_id)}")
        )
    if "image" in record:
        image = record["image"]
        match = _IMAGE_PATTERN.fullmatch(image) if isinstance(image, str) else None
        if match is None:
            violations.append(
                RuleViolation(
                    "image-path",
                    f"image must look like coco/train2017/000000000009.jpg, got {shown(image)}",
                )
            )
        elif id_ok and match.group(1) != record_id:
            violations.append(
                RuleViolation("image-path", f"image {image!r} does not match id {record_id!r}")
            )
    return violations


def _check_gqa_id_and_image(record: dict[str, Any], image: str) -> list[RuleViolation]:
    violations: list[RuleViolation] = []
    record_id = record.get("id")
    id_ok = isinstance(record_id, str) and _GQA_ID_PATTERN.fullmatch(record_id) is not None
    if "id" in record and not id_ok:
        violations.append(RuleViolation(
            "id-format", f"a GQA record's id must be its GQA image id, got {shown(record_id)}"))
    match = _GQA_IMAGE_PATTERN.fullmatch(image)
    if match is None:
        violations.append(RuleViolation(
            "image-path", f"image must look like gqa/images/2354786.jpg, got {shown(image)}"))
    elif id_ok and match.group(1) != record_id:
        violations.append(
            RuleViolation("image-path", f"image {image!r} does not match id {record_id!r}"))
    return violations


def _check_conversations(turns: Any) -> list[RuleViolation]:
    if not isinstance(turns, list):
        return [RuleViolation("turn-shape", f"conversations must be a list, got {shown(turns)}")]
    violations: list[RuleViolation] = []
    roles: list[str] = []
    texts: list[tuple[int, str]] = []
    for position, turn in enumerate(turns):
        if not (isinstance(turn, dict) and len(turn) == 2 and "from" in turn and "value" in turn):
            keys = sorted(str(key) for key in turn) if isinstance(turn, dict) else None
            got = f"keys {keys}" if keys is not None else type(turn).__name__
            violations.append(
                RuleViolation("turn-shape", f"turn {position} must be {{from, value}}, got {got}")
            )
            continue
        role, value = turn["from"], turn["value"]
        if role in (HUMAN, GPT):
            roles.append(role)
        else:
            violations.append(
                RuleViolation(
                    "turn-roles", f"turn {position} from must be human or gpt, got {shown(role)}"
                )
            )
        if not isinstance(value, str):
            violations.append(
                RuleViolation(
                    "text-type", f"turn {position} value must be a string, got {shown(value)}"
                )
            )
        elif not _encodes_as_utf8(value):
            violations.append(
                RuleViolation(
                    "text-type", f"turn {position} value holds a lone surrogate: {shown(value)}"
                )
            )
        else:
            texts.append((position, value))
    # Alternation is only meaningful once every turn has a readable role.
    if len(roles) == len(turns):
        violations += _check_alternation(roles)
    violations += _check_image_token(turns, texts)
    for position, value in texts:
        if not value.replace(IMAGE_TOKEN, "").strip():
            violations.append(
                RuleViolation(
                    "empty-text", f"turn {position} has no text besides <image>: {shown(value)}"
                )
            )
    return violations


def _check_alternation(roles: list[str]) -> list[RuleViolation]:
    if len(roles) < 2 or len(roles) % 2:
        return [
            RuleViolation("alternation", f"need an even number >= 2 of turns, got {len(roles)}")
        ]
    for position, role in enumerate(roles):
        expected = HUMAN if position % 2 == 0 else GPT
        if role != expected:
            return [
                RuleViolation(
                    "alternation", f"turn {position} should be from {expected}, got {role}"
                )
            ]
    return []


def _check_image_token(turns: list[Any], texts: list[tuple[int, str]]) -> list[RuleViolation]:
    count = sum(value.count(IMAGE_TOKEN) for _, value in texts)
    first_human = next(
        (p for p, t in enumerate(turns) if isinstance(t, dict) and t.get("from") == HUMAN), None
    )
    first_value = turns[first_human].get("value") if first_human is not None else None
    if count != 1:
        return [RuleViolation("image-token", f"<image> must appear exactly once, found {count}")]
    if not isinstance(first_value, str) or not first_value.startswith(IMAGE_TOKEN + "\n"):
        return [
            RuleViolation(
                "image-token",
                "the first human value must start with '<image>\\n', got "
                + shown(first_value if isinstance(first_value, str) else None),
            )
        ]
    return []


def _encodes_as_utf8(text: str) -> bool:
    if text.isascii():  # the common case, and far cheaper than encoding a copy
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate_llava_file(path: Path | str, *, max_problems: int = 100,
                        mix: bool = False) -> ValidationReport:
    """Stream a llava JSON file with ijson and check every record against every rule.

    `mix=True` checks a whole training mix (`export --mix`) by MIX_RULES, which every record
    kind of mix665k passes; otherwise each record must meet the strict RULES of our own.
    """
    path = Path(path)
    problem_count = 0
    kept: list[RecordProblem] = []
    rule_counts: Counter[str] = Counter()

    def note(problem: RecordProblem) -> None:
        nonlocal problem_count
        problem_count += 1
        rule_counts[problem.rule] += 1
        if len(kept) < max_problems:
            kept.append(problem)

    try:
        with path.open("rb") as source:
            records = _scan(source, note, check_mix_record if mix else check_record)
    except OSError as error:
        reason = error.strerror or str(error)
        raise ExportError(f"{path}: cannot read the file ({reason}); check the path") from error
    return ValidationReport(path, records, problem_count, tuple(kept), dict(rule_counts))


def _scan(source: BinaryIO, note: Callable[[RecordProblem], None],
          check: Callable[[Any], list[RuleViolation]]) -> int:
    """Check each record of an open file, passing every problem to `note`; returns the count."""
    import ijson  # streaming parser; only file validation needs it

    if _first_significant_byte(source) != b"[":
        note(RecordProblem(0, "", RuleViolation("top-level", "the file is not a JSON array")))
        return 0
    source.seek(0)
    records = 0
    try:
        # use_float: numbers come back as float, not Decimal, so messages read naturally.
        for record in ijson.items(source, "item", use_float=True):
            record_id = record.get("id") if isinstance(record, dict) else None
            for violation in check(record):
                note(RecordProblem(records, _printable_id(record_id), violation))
            records += 1
    except (ijson.JSONError, UnicodeDecodeError) as error:
        detail = f"malformed JSON after {records} records: {error}"
        note(RecordProblem(records, "", RuleViolation("json-syntax", detail)))
    return records


def _first_significant_byte(source: BinaryIO) -> bytes:
    while True:
        byte = source.read(1)
        if not byte or not byte.isspace():
            return byte


def _printable_id(record_id: Any) -> str:
    return record_id if isinstance(record_id, str) and len(record_id) <= 40 else ""


# The records of mix665k itself, carried into a training mix unchanged, are checked less
# strictly than ours: ids and image folders of every academic set, text-only records, and
# <image> before or after the first question all occur in the real file.
MIX_RULES: dict[str, str] = {
    "mix-keys": "the record is an object with conversations, an id (string or number) and, "
                "unless text-only, an image",
    "mix-image": "image is a relative path inside the image folder (no leading /, no ..)",
    "mix-turns": "conversations is a list of {from: human|gpt, value: string} turns, at least "
                 "one of each; with an image they alternate from human, an even count",
    "mix-image-token": "<image> appears once, in the first human turn, when there is an "
                       "image; never in a text-only record",
}


def check_mix_record(record: Any) -> list[RuleViolation]:
    """Every MIX_RULES rule a mix665k record breaks (empty: it may go into a training mix)."""
    if not isinstance(record, dict):
        return [RuleViolation("mix-keys", f"the record is not an object but "
                                          f"{type(record).__name__}")]
    violations: list[RuleViolation] = []
    record_id = record.get("id")
    if isinstance(record_id, bool) or not (
            isinstance(record_id, int) or (isinstance(record_id, str) and record_id.strip())):
        violations.append(RuleViolation("mix-keys", f"id must be a non-empty string or a "
                                                    f"number, got {shown(record_id)}"))
    image = record.get("image")
    has_image = image is not None
    if has_image and not (isinstance(image, str) and image and not image.startswith("/")
                          and "\\" not in image and ".." not in image.split("/")):
        violations.append(RuleViolation("mix-image", f"bad image path {shown(image)}"))
    turns = record.get("conversations")
    if not isinstance(turns, list):
        violations.append(RuleViolation("mix-keys", f"conversations must be a list, got "
                                                    f"{shown(turns)}"))
        return violations
    # One pass with plain comparisons: this runs on each of mix665k's 665K records.
    humans = gpts = token_count = first_turn_tokens = 0
    alternates = len(turns) % 2 == 0
    for position, turn in enumerate(turns):
        role = turn.get("from") if type(turn) is dict and len(turn) == 2 else None
        value = turn.get("value") if role is not None else None
        if (role != HUMAN and role != GPT) or type(value) is not str or not (
                value.isascii() or _encodes_as_utf8(value)):
            violations.append(RuleViolation(
                "mix-turns", f"turn {position} must be {{from: human|gpt, value: text}}, got "
                             f"{shown(turn)}"))
            return violations
        if role == HUMAN:
            humans += 1
            alternates = alternates and position % 2 == 0
        else:
            gpts += 1
            alternates = alternates and position % 2 == 1
        if IMAGE_TOKEN in value:
            found = value.count(IMAGE_TOKEN)
            token_count += found
            first_turn_tokens = found if position == 0 else first_turn_tokens
    if not humans or not gpts:
        violations.append(RuleViolation("mix-turns", "needs a human and a gpt turn"))
    elif has_image and not alternates:
        violations.append(RuleViolation(
            "mix-turns", "turns must alternate human, gpt from the first, an even count"))
    if has_image and (token_count != 1 or first_turn_tokens != 1):
        violations.append(RuleViolation(
            "mix-image-token", f"<image> must appear once, in the first turn; found "
                               f"{token_count}"))
    if not has_image and token_count:
        violations.append(RuleViolation("mix-image-token",
                                        "a text-only record must not hold <image>"))
    return violations
