"""Pairs that give away the model read text, not a picture: captions, boxes, coordinates."""

from __future__ import annotations

import re

from visinstruct.core.records import Pair

_LEAKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bcaptions?\b", re.IGNORECASE), "mentions captions"),
    (
        re.compile(
            r"\b(?:the|these|those|given|provided)\s+(?:descriptions?|notes)\s+"
            r"(?:says?|states?|mentions?|notes?|indicates?|suggests?|describes?)\b"
            r"|\baccording to the (?:descriptions?|context|notes)\b"
            r"|\b(?:given|provided) (?:context|descriptions?)\b",
            re.IGNORECASE,
        ),
        "refers to the text it was given",
    ),
    (re.compile(r"\bbounding[\s-]*box(?:es)?\b", re.IGNORECASE), "mentions bounding boxes"),
    (re.compile(r"\bco-?ordinates?\b", re.IGNORECASE), "mentions coordinates"),
    (
        re.compile(r"\[\s*-?\d*\.\d+\s*,\s*-?\d*\.\d+|\(\s*\d*\.\d+\s*(?:,\s*\d*\.\d+\s*){3}\)"),
        "contains a coordinate list",
    ),
)


def leak_of(pair: Pair) -> str:
    """Why `pair` gives away that the model read text instead of seeing the image, or ''."""
    return _leak_in(pair.question) or _leak_in(pair.answer)


def _leak_in(text: str) -> str:
    return next((reason for pattern, reason in _LEAKS if pattern.search(text)), "")


def drop_leaks(pairs: list[Pair], problems: list[str]) -> list[Pair]:
    """The pairs without a leak; each dropped one is noted in `problems`."""
    kept = []
    for number, pair in enumerate(pairs, 1):
        reason = leak_of(pair)
        if reason:
            shown = pair.question if _leak_in(pair.question) else pair.answer
            problems.append(f"pair {number} dropped: {reason}: {_first_line(shown)}")
        else:
            kept.append(pair)
    return kept


def _first_line(text: str, limit: int = 80) -> str:
    line = text.strip().split("\n", 1)[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"
