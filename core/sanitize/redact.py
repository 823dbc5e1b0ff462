"""The one redaction step: secret values taken out of any text before it is stored or shown.

Errors from services can echo the request that failed (headers, bodies, URLs), so every error
text, event and message passes through `redact()`; it imports nothing from the project, so the
store, the model wires and the commands can all use it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

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
# Words every header name above contains (lower case): without one, no header to mask.
_HEADER_HINTS = ("authorization", "x-amz-", "api-key", "x-hf-token")
# AWS access key ids, long-term and temporary, wherever they appear (a SigV4 Credential=...).
_AWS_KEY_PREFIXES = ("AKIA", "ASIA", "AIDA", "AROA")
_AWS_KEY_ID = re.compile(rf"\b(?:{'|'.join(_AWS_KEY_PREFIXES)})[A-Z0-9]{{16}}\b")

_LOWER_HEX = re.compile(r"%[0-9A-F]{2}")

_lock = threading.Lock()
_registered: set[str] = set()
# Per kind of text (any, or a model's reply): the secret values, the pattern of all their
# forms, and the forms themselves; emptied when the environment or the registered set changes.
_cache: dict[bool, tuple[frozenset[str], re.Pattern[str] | None, tuple[str, ...]]] = {}
_seen_env: dict[Any, Any] | None = None
_seen_registered = -1


def register_secret(value: str | None) -> None:
    """Mask `value` from now on (a password in a configured URL, a key read from a file)."""
    if value and len(value) >= 4:
        with _lock:
            _registered.add(value)


def register_url(url: str | None) -> None:
    """Mask the user info of a URL, e.g. `http://u:pw@host/v1`: the password, `u:pw` and the
    Basic token made of them, as written and percent-decoded.

    The user name alone is not masked: it is no secret, and masking a common word in every
    model reply would damage the data.
    """
    if not url:
        return
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    if parts.password is None:
        return
    user = parts.username or ""
    for name, password in {(user, parts.password), (unquote(user), unquote(parts.password))}:
        register_secret(password)
        register_secret(f"{name}:{password}")  # its Base64 form is the Basic token


def secret_values(*, sent_only: bool = False) -> frozenset[str]:
    """Every secret value known now: from the environment and registered ones. `sent_only`:
    only those the tool may send (registered ones and the well-known variables), not every
    variable whose name looks secret."""
    found = {value for name, value in os.environ.items()
             if value and len(value) >= _MIN_SECRET
             and (name in SECRET_ENV_NAMES or (not sent_only and _SECRET_NAME.search(name)))}
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


def secret_forms(value: str) -> set[str]:
    """The forms text may carry `value` in: as is or percent-decoded, each also as Base64 (the
    Basic token of a `user:password`), and all of them percent-encoded (upper and lower case
    hex, `+` for spaces), JSON-escaped and with escaped slashes."""
    plain = {value, unquote(value)}
    forms = set(plain)
    for form in plain:
        encoded = base64.b64encode(form.encode("utf-8", "surrogatepass")).decode("ascii")
        forms.update((encoded, encoded.rstrip("=")))  # padded or not; longest is masked first
    for form in list(forms):
        for quoted in (quote(form, safe=""), quote(form, safe="/"), quote_plus(form, safe="")):
            forms.update((quoted, _LOWER_HEX.sub(lambda m: m[0].lower(), quoted)))
        escaped = json.dumps(form)[1:-1]
        forms.update((escaped, form.replace("/", "\\/"), escaped.replace("/", "\\/")))
    return {form for form in forms if len(form) >= 4}


def _secret_pattern(sent_only: bool) -> tuple[re.Pattern[str] | None, tuple[str, ...]]:
    """One alternation of every secret in every form text may carry it (`secret_forms`),
    longest first so a secret inside another is masked whole; and the forms."""
    if _environment_changed():
        _cache.clear()
    cached = _cache.get(sent_only)
    if cached is None:
        values = secret_values(sent_only=sent_only)
        forms: set[str] = set()
        for value in values:
            forms.update(secret_forms(value))
        ordered = tuple(sorted(forms, key=len, reverse=True))
        pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        cached = _cache[sent_only] = (values, pattern, ordered)
    return cached[1], cached[2]


def redact_reply(text: str) -> str:
    """A model's reply with every secret the tool sent masked, in any form (a server may echo
    the request's headers inside a good answer), and header values, key ids and URL user
    info with a password. A variable that merely looks secret (`SORT_KEY=question`) and a
    URL's user name alone (`ssh://git@host`) are left alone here: masking them in every reply
    would damage the data."""
    return redact(text, sent_only=True)


def redact(text: str, *, sent_only: bool = False) -> str:
    """`text` with every known secret, credential header value and URL user info masked."""
    if not text:
        return text
    pattern, forms = _secret_pattern(sent_only)
    # Looking for each form is far cheaper than the alternation when none is there.
    if pattern is not None and any(form in text for form in forms):
        text = pattern.sub(MASK, text)
    if "://" in text and "@" in text:
        # In a reply, only user info with a password: `ssh://git@host` is text to keep.
        text = _USER_INFO.sub(lambda m: m[0] if sent_only and ":" not in m["info"]
                              else f"{m['scheme']}{MASK}@", text)
    # The header and key patterns cost far more than finding the words they start with, and
    # every reply passes here: look for the words first.
    lower = text.lower()
    if any(hint in lower for hint in _HEADER_HINTS):
        text = _QUOTED_HEADER.sub(lambda m: f"{m['name']}{m['quote']}{MASK}", text)
        text = _BARE_HEADER.sub(lambda m: f"{m['name']}{MASK}", text)
    if any(prefix in text for prefix in _AWS_KEY_PREFIXES):
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
