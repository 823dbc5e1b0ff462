"""Leaks: a pair that gives away that the model read the captions and boxes, not the picture."""

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
    return leak_in(pair.question) or leak_in(pair.answer)


def leak_in(text: str) -> str:
    """The first leak reason that `text` shows, or ''."""
    return next((reason for pattern, reason in _LEAKS if pattern.search(text)), "")
