"""Helpers shared by the network backends: reading replies, sniffing images, common errors."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from visinstruct.core.errors import BackendError
from visinstruct.core.models.backends.base import CompletionResponse, Message

# Servers name the same stop causes differently; callers see one vocabulary.
_FINISH_REASONS = {
    "eos_token": "stop",
    "stop_sequence": "stop",
    "end_turn": "stop",
    "stop": "stop",
    "length": "length",
    "max_tokens": "length",
    "max_length": "length",
    "model_length": "length",
}


@dataclass(frozen=True)
class ParsedReply:
    """The parts of a model reply the backends report."""

    text: str
    finish_reason: str
    tokens_in: int
    tokens_out: int

    def response(self, endpoint: str, raw: str,
                 extra: dict[str, Any] | None = None) -> CompletionResponse:
        """The CompletionResponse of this reply, served by `endpoint`, with its raw body."""
        return CompletionResponse(text=self.text, finish_reason=self.finish_reason,
                                  tokens_in=self.tokens_in, tokens_out=self.tokens_out,
                                  endpoint=endpoint, raw=raw, extra=extra or {})


def normal_finish_reason(reason: Any) -> str:
    """Map a server's finish reason onto "stop" / "length" (others pass through)."""
    if not reason:
        return "stop"
    return _FINISH_REASONS.get(str(reason).lower(), str(reason))


# No reply counts a billion tokens: a larger count is the server's mistake, not a cost.
MAX_TOKEN_COUNT = 10**9


def as_count(value: Any) -> int:
    """A token count from a reply field; 0 when absent, not an integer, negative or beyond
    any real reply (the reply itself is kept: only its count is ignored)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKEN_COUNT:
        return value
    return 0


def _reply_int(text: str) -> int | float:
    """A JSON integer of a reply; one too long for an exact int is read as a float (Python
    refuses to read integers of over 4,300 digits, which would discard the whole reply)."""
    return int(text) if len(text) <= 18 else float(text)


def loads_reply(text: str | bytes) -> Any:
    """`json.loads` for a server's reply: any integer is readable, however many digits."""
    return json.loads(text, parse_int=_reply_int)


def invalid(message: str) -> BackendError:
    """A request that must not be sent: a permanent InvalidParameters error."""
    return BackendError(message, kind=BackendError.PERMANENT, error_class="InvalidParameters")


def malformed(message: str) -> BackendError:
    """A 200 reply we cannot read: transient, since a retry usually gets a clean one."""
    return BackendError(message, kind=BackendError.TRANSIENT, error_class="MalformedResponse")


def image_format(image: bytes) -> str:
    """The image format ("jpeg", "png", "gif", "webp") sniffed from its first bytes."""
    if image.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if image.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if image.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if image[:4] == b"RIFF" and image[8:12] == b"WEBP":
        return "webp"
    raise invalid("an image is neither JPEG, PNG, GIF nor WebP; convert it before sending")


def chat_content(message: Message) -> str | list[dict[str, Any]]:
    """A chat-completions message's content: its text, or content parts with each picture
    first as an `image_url` data URI (OpenAI-compatible servers and SageMaker Messages)."""
    if not message.images:
        return message.content
    parts: list[dict[str, Any]] = [
        {
            "type": "image_url",
            "image_url": {
                "url": f"data:image/{image_format(image)};base64,"
                + base64.b64encode(image).decode("ascii")
            },
        }
        for image in message.images
    ]
    if message.content:
        parts.append({"type": "text", "text": message.content})
    return parts


def text_only(request_messages: Any, wire: str) -> None:
    """Refuse a request carrying pictures on a wire that sends a text prompt only."""
    if any(m.images for m in request_messages):
        raise invalid(f"{wire} sends a text prompt only and this request carries a picture; "
                      "set the model's vision = false or use a wire that carries pictures")


def parse_chat_completion(document: Any) -> ParsedReply:
    """Read an OpenAI-style `chat.completion` reply."""
    try:
        choice = document["choices"][0]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError) as error:
        raise malformed(
            f"the chat completion has no choices[0].message.content ({error!r})"
        ) from error
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise malformed("choices[0].message.content is not a string")
    usage = document.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return ParsedReply(
        text=content.strip(),
        finish_reason=normal_finish_reason(choice.get("finish_reason")),
        tokens_in=as_count(usage.get("prompt_tokens")),
        tokens_out=as_count(usage.get("completion_tokens")),
    )


def read_json(raw: bytes) -> Any:
    """Decode a reply body, or raise the transient MalformedResponse error."""
    try:
        return loads_reply(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise malformed(f"the reply is not JSON ({error.__class__.__name__}: {error})") from error
    except RecursionError as error:  # a body nested deeper than Python's parser goes
        raise malformed("the reply nests its JSON too deeply to read") from error


def naming_target(error: BackendError, target: str) -> BackendError:
    """The same error with its message prefixed by the endpoint or model it came from."""
    return BackendError(
        f"{target}: {error.message}", kind=error.kind, error_class=error.error_class,
        status=error.status,
    )
