"""The one small interface every model wire implements: complete(request) -> response."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Message:
    """One chat message; `images` are raw image bytes for models that see pictures."""

    role: str  # "system" | "user" | "assistant"
    content: str
    images: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class CompletionRequest:
    """Messages plus sampling parameters and an optional JSON schema for the output."""

    messages: tuple[Message, ...]
    max_tokens: int = 1024
    temperature: float = 0.7
    top_p: float = 0.9
    stop: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = None
    seed: int | None = None
    # What the request is for ("generate:detail", "judge:3", ...): for logs and test doubles only.
    tag: str = ""


@dataclass(frozen=True)
class CompletionResponse:
    """What came back: text, why it stopped, token counts, and which endpoint served it."""

    text: str
    finish_reason: str = "stop"
    tokens_in: int = 0
    tokens_out: int = 0
    endpoint: str = ""
    raw: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """A model wire. `endpoints` names the independent targets the pool may spread over."""

    name: str
    endpoints: tuple[str, ...]

    def complete(self, request: CompletionRequest,
                 endpoint: str | None = None) -> CompletionResponse:
        """Send one request (to `endpoint` if given); return the response or raise BackendError."""
        ...

    def close(self) -> None:
        """Release clients, contexts and sockets."""
        ...
