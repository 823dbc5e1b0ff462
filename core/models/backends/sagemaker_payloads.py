"""Request bodies and reply parsing for the SageMaker payload schemas: TGI, LMI, Messages."""

from __future__ import annotations

import json
from typing import Any

from visinstruct.core.models.backends.base import CompletionRequest
from visinstruct.core.models.backends.mixtral import fold_system, mixtral_prompt
from visinstruct.core.models.backends.replies import (
    ParsedReply,
    as_count,
    chat_content,
    invalid,
    loads_reply,
    malformed,
    normal_finish_reason,
    parse_chat_completion,
    read_json,
    text_only,
)

SCHEMAS = ("tgi", "lmi", "messages")
TGI_MAX_STOP_SEQUENCES = 4


def _check_common(request: CompletionRequest) -> None:
    if request.max_tokens < 1:
        raise invalid(f"max_tokens must be at least 1, got {request.max_tokens}")
    if not request.messages:
        raise invalid("a request needs at least one message")


def _prompt(request: CompletionRequest) -> str:
    try:
        return mixtral_prompt(request.messages)
    except ValueError as error:
        raise invalid(f"cannot build the Mixtral prompt: {error}") from error


def _sampling(request: CompletionRequest, params: dict[str, Any]) -> None:
    """Fill temperature, top_p and do_sample as TGI accepts them (no T <= 0, no top_p >= 1)."""
    if request.temperature <= 0:
        params["do_sample"] = False  # greedy: TGI has no temperature 0
        return
    params["do_sample"] = True
    params["temperature"] = request.temperature
    if 0 < request.top_p < 1:
        params["top_p"] = request.top_p


def tgi_body(request: CompletionRequest, *, stream: bool = False) -> dict[str, Any]:
    """The Hugging Face TGI body: templated prompt plus validated parameters."""
    _check_common(request)
    text_only(request.messages, "the SageMaker tgi schema")
    if len(request.stop) > TGI_MAX_STOP_SEQUENCES:
        raise invalid(
            f"TGI accepts at most {TGI_MAX_STOP_SEQUENCES} stop sequences, got {len(request.stop)}"
        )
    params: dict[str, Any] = {"max_new_tokens": request.max_tokens}
    _sampling(request, params)
    params.update({"stop": list(request.stop), "return_full_text": False, "details": True})
    if request.seed is not None:
        params["seed"] = request.seed
    if request.json_schema is not None:
        params["grammar"] = {"type": "json", "value": request.json_schema}
    body: dict[str, Any] = {"inputs": _prompt(request), "parameters": params}
    if stream:
        body["stream"] = True
    return body


def lmi_body(request: CompletionRequest, *, stream: bool = False) -> dict[str, Any]:
    """The DJL LMI body; it names stop sequences `stop_sequences`."""
    _check_common(request)
    text_only(request.messages, "the SageMaker lmi schema")
    params: dict[str, Any] = {"max_new_tokens": request.max_tokens}
    _sampling(request, params)
    params["stop_sequences"] = list(request.stop)
    if request.seed is not None:
        params["seed"] = request.seed
    body: dict[str, Any] = {"inputs": _prompt(request), "parameters": params}
    if stream:
        body["stream"] = True
    return body


def messages_body(request: CompletionRequest, *, stream: bool = False) -> dict[str, Any]:
    """An OpenAI-style chat body with the system text folded into the first user turn;
    pictures go first in their turn as `image_url` data URIs."""
    _check_common(request)
    try:
        turns = fold_system(request.messages)
    except ValueError as error:
        raise invalid(f"cannot build the chat messages: {error}") from error
    body: dict[str, Any] = {
        "messages": [{"role": m.role, "content": chat_content(m)} for m in turns],
        "max_tokens": request.max_tokens,
        "temperature": max(request.temperature, 0.0),
    }
    if 0 < request.top_p < 1:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop"] = list(request.stop)
    if request.seed is not None:
        body["seed"] = request.seed
    if request.json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": request.json_schema},
        }
    if stream:
        body["stream"] = True
    return body


def build_body(schema: str, request: CompletionRequest, *, stream: bool = False) -> dict[str, Any]:
    """The validated body for `schema`; a request that must not be sent raises PERMANENT."""
    if schema == "tgi":
        return tgi_body(request, stream=stream)
    if schema == "lmi":
        return lmi_body(request, stream=stream)
    if schema == "messages":
        return messages_body(request, stream=stream)
    raise invalid(f"unknown SageMaker schema {schema!r}; use one of {', '.join(SCHEMAS)}")


def parse_generated(document: Any) -> ParsedReply:
    """Read a TGI list `[{"generated_text", "details"}]` or an LMI dict `{"generated_text"}`."""
    if isinstance(document, list):
        if not document:
            raise malformed("the reply is an empty list")
        document = document[0]
    if not isinstance(document, dict) or not isinstance(document.get("generated_text"), str):
        raise malformed("the reply has no generated_text string")
    details = document.get("details")
    details = details if isinstance(details, dict) else {}
    prefill = details.get("prefill")
    return ParsedReply(
        text=document["generated_text"].strip(),
        finish_reason=normal_finish_reason(details.get("finish_reason")),
        tokens_in=len(prefill) if isinstance(prefill, list) else 0,
        tokens_out=as_count(details.get("generated_tokens")),
    )


def parse_body(schema: str, raw: bytes) -> ParsedReply:
    """Decode and read a non-streaming reply for `schema`."""
    document = read_json(raw)
    if schema == "messages":
        return parse_chat_completion(document)
    return parse_generated(document)


class StreamAssembler:
    """Rebuilds one reply from streamed bytes whose chunk boundaries may split a line anywhere."""

    def __init__(self) -> None:
        self._pending = b""
        self._tokens: list[str] = []
        self._final_text: str | None = None
        self._finish_reason: Any = None
        self._tokens_in = 0
        self._tokens_out = 0
        self.raw = bytearray()

    def feed(self, chunk: bytes) -> None:
        """Add bytes; complete lines are read at once, a partial line waits for the rest."""
        self.raw.extend(chunk)
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            self._read_line(line)

    def finish(self) -> ParsedReply:
        """Read whatever is left and return the assembled reply."""
        if self._pending.strip():
            self._read_line(self._pending)
        self._pending = b""
        text = self._final_text if self._final_text is not None else "".join(self._tokens)
        return ParsedReply(
            text=text.strip(),
            finish_reason=normal_finish_reason(self._finish_reason),
            tokens_in=self._tokens_in,
            tokens_out=self._tokens_out or len(self._tokens),
        )

    def _read_line(self, line: bytes) -> None:
        text = line.strip()
        if text.startswith(b"data:"):
            text = text[len(b"data:"):].strip()
        if not text or text == b"[DONE]":
            return
        try:
            event = loads_reply(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise malformed(f"a streamed line is not JSON ({error})") from error
        if not isinstance(event, dict):
            raise malformed("a streamed line is not a JSON object")
        if isinstance(event.get("choices"), list) and event["choices"]:
            self._read_chat_chunk(event)
            return
        token = event.get("token")
        token = token if isinstance(token, dict) else {}
        # Special tokens such as the closing </s> are not part of the answer.
        if isinstance(token.get("text"), str) and not token.get("special"):
            self._tokens.append(token["text"])
        if isinstance(event.get("generated_text"), str):
            self._final_text = event["generated_text"]
        details = event.get("details")
        if isinstance(details, dict):
            self._finish_reason = details.get("finish_reason") or self._finish_reason
            self._tokens_out = as_count(details.get("generated_tokens")) or self._tokens_out

    def _read_chat_chunk(self, event: dict[str, Any]) -> None:
        choice = event["choices"][0]
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and isinstance(delta.get("content"), str):
            self._tokens.append(delta["content"])
        if isinstance(choice, dict) and choice.get("finish_reason"):
            self._finish_reason = choice["finish_reason"]
        usage = event.get("usage")
        if isinstance(usage, dict):
            self._tokens_in = as_count(usage.get("prompt_tokens")) or self._tokens_in
            self._tokens_out = as_count(usage.get("completion_tokens")) or self._tokens_out
