"""A visinstruct backend plugin: `echo` answers every request from the request's own context.

It shows the whole of a plugin: a client with `complete` and `close`, a check of its
[models.X] keys, and the BackendSpec that the `visinstruct.backends` entry point names.
"""

from __future__ import annotations

import hashlib
import json
import re

from visinstruct.core.config import TOKENS, BackendSpec, ModelConfig
from visinstruct.core.errors import BackendError, ConfigError
from visinstruct.core.models.backends.base import CompletionRequest, CompletionResponse

# A box line of the context ("dog: [0.10, 0.20, 0.55, 0.90]") is no sentence to echo.
_BOX = re.compile(r"\[\d\.\d+,")


class EchoBackend:
    """Replies built from the captions in the request, shaped by what the request is for."""

    def __init__(self, name: str, endpoints: tuple[str, ...]) -> None:
        self.name = f"echo:{name}"
        self.endpoints = endpoints

    def complete(self, request: CompletionRequest,
                 endpoint: str | None = None) -> CompletionResponse:
        """Answer one request; the reply depends only on the request, so runs repeat exactly."""
        if not request.messages:
            raise BackendError("echo: a request with no messages", kind=BackendError.PERMANENT,
                               error_class="InvalidParameters")
        stage, _, argument = request.tag.partition(":")
        sentences = _sentences(request.messages[-1].content)
        seed = int(hashlib.sha256(request.messages[-1].content.encode()).hexdigest(), 16)
        if stage == "generate" and argument == "detail":
            text = json.dumps({"description": " ".join(sentences)})
        elif stage == "generate":
            text = json.dumps({"pairs": [
                {"question": f"Which detail of the picture does observation {n + 1} describe?",
                 "answer": sentence}
                for n, sentence in enumerate(sentences[:3])]})
        elif stage == "judge":
            count = int(argument or "1")
            text = json.dumps({"scores": [
                {"index": n + 1, "score": 6 + (seed >> n) % 5, "reason": "echoes the context"}
                for n in range(count)]})
        elif stage == "evaluate":
            text = f"{7 + seed % 3} {6 + (seed >> 2) % 3}\nBoth answers restate the context."
        else:
            text = sentences[-1]
        tokens_in = sum(len(message.content) for message in request.messages) // 4
        return CompletionResponse(text=text, tokens_in=tokens_in, tokens_out=max(1, len(text) // 4),
                                  endpoint=endpoint or self.endpoints[0], raw=text)

    def close(self) -> None:
        """Nothing to release: no sockets, no model."""


def _sentences(prompt: str) -> list[str]:
    """The caption lines after the prompt's last "Context:" line, or a stand-in."""
    lines = [line.strip() for line in prompt.splitlines() if line.strip()]
    start = max((n for n, line in enumerate(lines) if line == "Context:"), default=-1) + 1
    found = [line for line in lines[start:] if not _BOX.search(line) and not line.endswith(":")]
    return found[-5:] or ["The picture shows a scene."]


def build(model: ModelConfig) -> EchoBackend:
    """The client a [models.X] table with backend = "echo" describes."""
    return EchoBackend(model.name, model.endpoints or ("echo",))


def check(model: ModelConfig, where: str) -> None:
    """Endpoint names label ledger rows, so an empty one is refused before the run."""
    if any(not endpoint.strip() for endpoint in model.endpoints):
        raise ConfigError(f"{where}.endpoints must not hold an empty name for backend echo")


BACKEND = BackendSpec(
    name="echo",
    build=build,
    keys=("endpoints",),
    check=check,
    pricing=TOKENS,
    runs_locally=True,
    summary="answers from the request's own context; no model, no cost",
)
