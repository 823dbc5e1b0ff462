"""The one redaction step: secret values taken out of any text before it is stored or shown.

Errors from services can echo the request that failed (headers, bodies, URLs), so every error
text, event and message passes through `redact()`; it imports nothing from the project, so the
store, the model wires and the commands can all use it.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any
from urllib.parse import quote, urlsplit

MASK = "***"
# Environment variables holding secrets by name, and names that say "secret" by their shape.
SECRET_ENV_NAMES = frozenset({
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "OPENAI_API_KEY",
})
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|API_?KEY|(?:^|_)KEY(?:_|$)",
                          re.IGNORECASE)
# Shorter values are too likely to be ordinary words ("testing") to mask everywhere.
_MIN_SECRET = 8

# Header values, in the forms errors print them: "Authorization: Bearer x", JSON
# "authorization": "x", a Python dict 'X-Amz-Security-Token': 'x', a query string.
_HEADER_NAMES = (r"authorization|proxy-authorization|x-amz-security-token|x-api-key|api-key"
                 r"|x-amz-credential|x-amz-signature|x-hf-token")
_QUOTED_HEADER = re.compile(
    rf"""(?P<name>["']?(?:{_HEADER_NAMES})["']?\s*[:=]\s*)"""
    r"""(?P<quote>["'])(?P<value>(?:\\.|(?!(?P=quote)).)*)""",
    re.IGNORECASE)
_BARE_HEADER = re.compile(
    rf"""(?P<name>\b(?:{_HEADER_NAMES})\s*[:=]\s*)"""
    rf"""(?P<value>[^\s"',;&}}\]]+(?:[ ]+[^\s"',;&}}\]]+)?)""",
    re.IGNORECASE)
_USER_INFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.\-]*://)(?P<info>[^/\s@'\"<>]+)@",
                        re.IGNORECASE)
# AWS access key ids, long-term and temporary, wherever they appear (a SigV4 Credential=...).
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA)[A-Z0-9]{16}\b")

_lock = threading.Lock()
_registered: set[str] = set()
_cache: tuple[frozenset[str], re.Pattern[str] | None] = (frozenset(), None)
_seen_env: dict[Any, Any] | None = None
_seen_registered = -1


def register_secret(value: str | None) -> None:
    """Mask `value` from now on (a password in a configured URL, a key read from a file)."""
    if value and len(value) >= 4:
        with _lock:
            _registered.add(value)


def register_url(url: str | None) -> None:
    """Mask the password (and user) of a URL's user info, e.g. `http://u:pw@host/v1`."""
    if not url:
        return
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    register_secret(parts.password)
    if parts.password:
        register_secret(parts.username)


def secret_values() -> frozenset[str]:
    """Every secret value known now: from the environment and registered ones."""
    found = {value for name, value in os.environ.items()
             if value and len(value) >= _MIN_SECRET
             and (name in SECRET_ENV_NAMES or _SECRET_NAME.search(name))}
    with _lock:
        found |= _registered
    return frozenset(found)


def _environment_changed() -> bool:
    """Whether the environment (or the registered set) changed since the pattern was built;
    comparing the raw environment is far cheaper than decoding and scanning it per call."""
    global _seen_env, _seen_registered
    raw = getattr(os.environ, "_data", os.environ)
    with _lock:
        registered = len(_registered)
    if raw == _seen_env and registered == _seen_registered:
        return False
    _seen_env, _seen_registered = dict(raw), registered
    return True


def _secret_pattern() -> re.Pattern[str] | None:
    """One alternation of every secret in the forms text may carry it (as is, URL-quoted,
    with JSON-escaped slashes), longest first so a secret inside another is masked whole."""
    global _cache
    if not _environment_changed():
        return _cache[1]
    values = secret_values()
    cached_values, pattern = _cache
    if values == cached_values:
        return pattern
    forms: set[str] = set()
    for value in values:
        forms.update((value, quote(value, safe=""), quote(value, safe="/"),
                      value.replace("/", "\\/")))
    ordered = sorted(forms, key=len, reverse=True)
    pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
    _cache = (values, pattern)
    return pattern


def redact(text: str) -> str:
    """`text` with every known secret, credential header value and URL user info masked."""
    if not text:
        return text
    pattern = _secret_pattern()
    if pattern is not None:
        text = pattern.sub(MASK, text)
    if "://" in text and "@" in text:
        text = _USER_INFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    if any(c in text for c in ":='\""):
        text = _QUOTED_HEADER.sub(lambda m: f"{m['name']}{m['quote']}{MASK}", text)
        text = _BARE_HEADER.sub(lambda m: f"{m['name']}{MASK}", text)
    if "A" in text:
        text = _AWS_KEY_ID.sub(MASK, text)
    return text


def redact_url(url: str) -> str:
    """A URL without its user info, to name an endpoint in logs, rows and screens."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
