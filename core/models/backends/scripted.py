"""A test double that answers from a script (or a built-in, deterministic one) without a model."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visinstruct.core.config import ModelConfig
from visinstruct.core.errors import BackendError, ConfigError
from visinstruct.core.models.backends.base import CompletionRequest, CompletionResponse

Responder = Callable[[CompletionRequest], str]


@dataclass(frozen=True)
class Rule:
    """Answer requests whose tag or last user message matches `match` (a regex)."""

    match: str
    replies: tuple[str, ...] = ()
    error: str = ""          # backpressure | transient | permanent: raise instead of replying
    times: int = 0           # apply to the first N matching requests only (0: always)
    latency: float = 0.0
    finish: str = "stop"     # the finish reason to report ("length": cut at max_tokens)


def request_digest(request: CompletionRequest) -> str:
    """A stable hash of what was asked, so replies stay the same across processes."""
    text = request.tag + "\n" + "\n".join(f"{m.role}:{m.content}" for m in request.messages)
    return hashlib.sha256(text.encode()).hexdigest()


class ScriptedBackend:
    """Replies by rules from a JSON script, else by a built-in responder mimicking a good model."""

    def __init__(self, script: Path | str | None = None, *,
                 endpoints: Sequence[str] = ("scripted",), latency: float = 0.0,
                 responder: Responder | None = None, name: str = "scripted") -> None:
        self.name = name
        self.endpoints = tuple(endpoints)
        self.latency = latency
        self.responder = responder or builtin_reply
        self.rules: list[Rule] = []
        self._hits: dict[int, int] = {}
        self._lock = threading.Lock()
        self.calls = 0
        if script:
            self._load(Path(script))

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the script: {exc}") from exc
        self.latency = float(data.get("latency", self.latency))
        for item in data.get("rules", []):
            replies = item.get("replies") or ([item["reply"]] if "reply" in item else [])
            self.rules.append(Rule(item.get("match", ""), tuple(replies), item.get("error", ""),
                                   int(item.get("times", 0)), float(item.get("latency", 0.0)),
                                   str(item.get("finish", "stop"))))

    def complete(self, request: CompletionRequest,
                 endpoint: str | None = None) -> CompletionResponse:
        """Answer `request` by the first matching rule, else by the responder."""
        with self._lock:
            self.calls += 1
        target = request.tag + "\n" + (request.messages[-1].content if request.messages else "")
        digest = request_digest(request)
        for number, rule in enumerate(self.rules):
            if rule.match and not re.search(rule.match, target, re.S):
                continue
            with self._lock:
                hits = self._hits.get(number, 0)
                if rule.times and hits >= rule.times:
                    continue
                self._hits[number] = hits + 1
            if rule.latency:
                time.sleep(rule.latency)
            if rule.error:
                raise BackendError(f"scripted {rule.error} error", kind=rule.error,
                                   error_class=f"Scripted{rule.error.title()}")
            if rule.replies:
                text = rule.replies[int(digest, 16) % len(rule.replies)]
                return self._response(text, endpoint, rule.finish)
        if self.latency:
            time.sleep(self.latency)
        if self.responder is builtin_reply:
            return self._response(builtin_reply(request, digest), endpoint)
        return self._response(self.responder(request), endpoint)

    def _response(self, text: str, endpoint: str | None,
                  finish: str = "stop") -> CompletionResponse:
        return CompletionResponse(text=text, finish_reason=finish, tokens_in=100,
                                  tokens_out=max(1, len(text) // 4),
                                  endpoint=endpoint or self.endpoints[0], raw=text)

    def close(self) -> None:
        """Nothing to release."""


def _context_lines(request: CompletionRequest) -> list[str]:
    text = request.messages[-1].content if request.messages else ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # The context is what follows the last "Context:" line, minus boxes and the reply cue.
    start = max((i for i, line in enumerate(lines) if line == "Context:"), default=-1) + 1
    captions = [line for line in lines[start:] if not re.search(r"\[\d\.\d+,", line)
                and not line.endswith(":")]
    return captions[-5:] or ["a scene"]


def builtin_reply(request: CompletionRequest, digest_hex: str = "") -> str:
    """A deterministic, well-formed answer for each kind of request the pipeline sends."""
    digest = int(digest_hex or request_digest(request), 16)
    stage, _, arg = request.tag.partition(":")
    if stage == "generate" and arg == "detail":
        lines = _context_lines(request)
        return json.dumps({"description": " ".join(lines[-3:])})
    if stage == "generate":
        lines = _context_lines(request)
        n = 2 + digest % 3
        pairs: list[dict[str, Any]] = [
            {"question": f"What can you tell me about part {i + 1} of this scene?",
             "answer": lines[-1 - (i % len(lines))]}
            for i in range(n)
        ]
        return json.dumps({"pairs": pairs})
    if stage == "judge":
        n = int(arg or "1")
        scores = [{"index": i + 1, "score": 4 + (digest >> (4 * i)) % 7, "reason": "scripted"}
                  for i in range(n)]
        return json.dumps({"scores": scores})
    if stage == "evaluate":
        return f"{6 + digest % 4} {5 + (digest >> 4) % 4}\nScripted comparison."
    if stage == "answer":
        return "Scripted answer: " + _context_lines(request)[-1]
    return "ok"


def from_config(model: ModelConfig) -> ScriptedBackend:
    """The scripted backend a [models.X] table describes (the registry's builder)."""
    endpoints = model.endpoints or ("scripted",)
    return ScriptedBackend(model.script or None, endpoints=endpoints, name=model.name)
