"""Any text from a model or a source file made safe to store and to export as data."""

from __future__ import annotations

import re

# Terminal escape sequences (CSI like "\x1b[31m", OSC like "\x1b]0;title\x07"): removed whole,
# so no "[31m" is left behind once the escape byte itself is gone.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]")
# C0 and C1 control characters and DEL, except tab and newline.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# The token LLaVA records use for the picture; the export puts exactly one in each record.
_IMAGE_TOKEN = re.compile(r"[ \t]*<\s*image\s*>[ \t]*", re.IGNORECASE)


def storable(text: str) -> str:
    """`text` as valid Unicode: lone surrogates become U+FFFD, proper surrogate pairs join.

    SQLite and JSON writers encode to UTF-8, which a lone surrogate (from a reply's
    `"\\ud800"` escape or undecodable bytes) makes raise.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def clean_pair_text(text: str) -> str:
    """A question or answer as it may be stored: no `<image>` token, no control characters
    but newline and tab, valid Unicode, trimmed."""
    if text.isascii() and text.isprintable() and "<" not in text:
        return text.strip()  # the common case, without a copy or a regex
    text = storable(text)
    if "<" in text:
        text = _IMAGE_TOKEN.sub(" ", text)
    if not text.isprintable():
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        text = _CONTROL.sub("", _ANSI.sub("", text))
    return text.strip()
