"""How an OpenAI-compatible request asks for JSON, and telling a rejected request from a failure.

Servers take different forms (OpenAI `json_schema`, llama.cpp `json_object` with a schema,
vLLM `guided_json`), so `auto` tries them richest first and steps down when one is refused.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from visinstruct.core.config import OPENAI_JSON_MODES

# The forms `auto` tries, richest first; "none" sends no constraint (the prompt still asks).
LADDER: tuple[str, ...] = ("json_schema", "json_object", "guided_json", "none")
# Older name of the first form, kept so existing configs mean what they meant.
_ALIASES = {"response_format": "json_schema"}
# Words of a reply that refused the request itself (its shape), not a failure to serve it.
_REJECTION = re.compile(
    r"validation error|input should be|extra inputs are not permitted|field required"
    r"|unrecognized request argument|unknown parameter|unsupported parameter"
    r"|invalid_request_error|is not supported|not one of|must be one of",
    re.IGNORECASE,
)
# Request fields a refusal must name before `auto` steps down a form.
_JSON_FIELDS = re.compile(r"response_format|json_schema|json_object|guided_json|\bschema\b",
                          re.IGNORECASE)


def concrete(mode: str) -> str:
    """The form a configured mode sends first (`auto` starts at the top of the ladder)."""
    if mode not in OPENAI_JSON_MODES:
        raise ValueError(f"unknown json_mode {mode!r}")
    return LADDER[0] if mode == "auto" else _ALIASES.get(mode, mode)


def json_fields(mode: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The body fields that ask for output matching `schema` in form `mode`."""
    if mode == "json_schema":
        return {"response_format": {"type": "json_schema",
                                    "json_schema": {"name": "output", "schema": schema}}}
    if mode == "json_object":
        return {"response_format": {"type": "json_object", "schema": schema}}
    if mode == "guided_json":
        return {"guided_json": schema}
    return {}


def validation_detail(document: Any) -> str | None:
    """A FastAPI/pydantic validation body (`{"detail": [{"loc": ..., "msg": ...}]}`) as text."""
    if not isinstance(document, dict):
        return None
    detail = document.get("detail")
    if not isinstance(detail, list) or not detail:
        return None
    parts = []
    for item in detail:
        if not isinstance(item, dict) or "loc" not in item:
            return None
        loc = ".".join(str(p) for p in item.get("loc") or () if p != "body")
        parts.append(f"{loc}: {item.get('msg', 'invalid')}")
    return "request validation failed: " + "; ".join(parts)


def rejects_request(text: str) -> bool:
    """Whether a server's error text says the request itself was refused (a retry cannot help)."""
    return bool(_REJECTION.search(text))


def names_json_field(text: str) -> bool:
    """Whether a refusal names one of the fields that ask for JSON."""
    return bool(_JSON_FIELDS.search(text))


class ModeLadder:
    """Per endpoint, the JSON form that works, stepped down once per refusal and remembered."""

    def __init__(self, mode: str) -> None:
        self.auto = mode == "auto"
        self._first = concrete(mode)
        self._current: dict[str, str] = {}
        self._lock = threading.Lock()

    def current(self, endpoint: str) -> str:
        """The form to send to `endpoint` now."""
        with self._lock:
            return self._current.get(endpoint, self._first)

    def step_down(self, endpoint: str, refused: str) -> bool:
        """After `endpoint` refused form `refused`: move below it; False when nothing is left.

        Several calls may see the same refusal at once: the ladder moves once for them all.
        """
        if not self.auto or refused == LADDER[-1]:
            return False
        with self._lock:
            now = self._current.get(endpoint, self._first)
            if now == refused:
                self._current[endpoint] = LADDER[LADDER.index(refused) + 1]
            return True
