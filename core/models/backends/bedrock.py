"""Claude (or any Messages-API model) on Amazon Bedrock through InvokeModel or Converse."""

from __future__ import annotations

import base64
import json
from typing import Any

from visinstruct.core.config import ModelConfig, batch_family
from visinstruct.core.errors import ConfigError
from visinstruct.core.models.backends.aws_client import (
    client_config,
    make_client,
    translated_errors,
)
from visinstruct.core.models.backends.base import CompletionRequest, CompletionResponse, Message
from visinstruct.core.models.backends.replies import (
    ParsedReply,
    as_count,
    image_format,
    invalid,
    malformed,
    normal_finish_reason,
    read_json,
)

ANTHROPIC_VERSION = "bedrock-2023-05-31"
APIS = ("invoke", "converse")


def _system_text(request: CompletionRequest) -> str:
    return "\n\n".join(m.content for m in request.messages if m.role == "system" and m.content)


def _turns(request: CompletionRequest) -> list[Message]:
    turns = [m for m in request.messages if m.role != "system"]
    for turn in turns:
        if turn.role not in ("user", "assistant"):
            raise invalid(f"unknown message role {turn.role!r}; use system, user or assistant")
    if not turns or turns[0].role != "user":
        raise invalid("a Claude request must have a user message before any assistant message")
    return turns


def _check(request: CompletionRequest) -> None:
    if request.max_tokens < 1:
        raise invalid(f"max_tokens must be at least 1, got {request.max_tokens}")


def invoke_body(request: CompletionRequest, *, send_top_p: bool = False) -> dict[str, Any]:
    """The Anthropic Messages body for InvokeModel; images go first in a turn, base64-encoded."""
    _check(request)
    messages = []
    for turn in _turns(request):
        content: list[dict[str, Any]] = [
            {
                "type": "image",
                "source": {
                    "type": "base64",
                    "media_type": f"image/{image_format(image)}",
                    "data": base64.b64encode(image).decode("ascii"),
                },
            }
            for image in turn.images
        ]
        if turn.content:
            content.append({"type": "text", "text": turn.content})
        messages.append({"role": turn.role, "content": content})
    body: dict[str, Any] = {
        "anthropic_version": ANTHROPIC_VERSION,
        "max_tokens": request.max_tokens,
        "messages": messages,
        "temperature": min(max(request.temperature, 0.0), 1.0),
    }
    system = _system_text(request)
    if system:
        body["system"] = system
    # Newer Claude models refuse temperature and top_p together.
    if send_top_p:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    return body


def converse_arguments(
    model_id: str, request: CompletionRequest, *, send_top_p: bool = False
) -> dict[str, Any]:
    """Keyword arguments for `client.converse`; images are raw bytes (botocore encodes them)."""
    _check(request)
    messages = []
    for turn in _turns(request):
        content: list[dict[str, Any]] = [
            {"image": {"format": image_format(image), "source": {"bytes": image}}}
            for image in turn.images
        ]
        if turn.content:
            content.append({"text": turn.content})
        messages.append({"role": turn.role, "content": content})
    inference: dict[str, Any] = {
        "maxTokens": request.max_tokens,
        "temperature": min(max(request.temperature, 0.0), 1.0),
    }
    if send_top_p:
        inference["topP"] = request.top_p
    if request.stop:
        inference["stopSequences"] = list(request.stop)
    arguments: dict[str, Any] = {
        "modelId": model_id, "messages": messages, "inferenceConfig": inference,
    }
    system = _system_text(request)
    if system:
        arguments["system"] = [{"text": system}]
    return arguments


def _text_blocks(blocks: Any) -> str:
    if not isinstance(blocks, list):
        raise malformed("the reply has no content list")
    # Converse blocks carry no "type"; Messages blocks do, and only "text" ones hold the answer.
    return "".join(
        block["text"]
        for block in blocks
        if isinstance(block, dict) and isinstance(block.get("text"), str)
        and block.get("type", "text") == "text"
    )


def parse_invoke_reply(raw: bytes) -> ParsedReply:
    """Read an Anthropic Messages reply: content[].text, stop_reason, usage."""
    document = read_json(raw)
    if not isinstance(document, dict):
        raise malformed("the reply is not a JSON object")
    usage = document.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return ParsedReply(
        text=_text_blocks(document.get("content")).strip(),
        finish_reason=normal_finish_reason(document.get("stop_reason")),
        tokens_in=as_count(usage.get("input_tokens")),
        tokens_out=as_count(usage.get("output_tokens")),
    )


def parse_converse_reply(response: dict[str, Any]) -> ParsedReply:
    """Read a Converse reply: output.message.content[].text, stopReason, usage."""
    try:
        blocks = response["output"]["message"]["content"]
    except (KeyError, TypeError) as error:
        raise malformed(f"the Converse reply has no output.message.content ({error!r})") from error
    usage = response.get("usage") or {}
    return ParsedReply(
        text=_text_blocks(blocks).strip(),
        finish_reason=normal_finish_reason(response.get("stopReason")),
        tokens_in=as_count(usage.get("inputTokens")),
        tokens_out=as_count(usage.get("outputTokens")),
    )


class BedrockBackend:
    """One Bedrock model id; the client never retries because the pool owns retries."""

    def __init__(
        self,
        model_id: str,
        *,
        region: str = "us-east-1",
        api: str = "invoke",
        max_in_flight: int = 16,
        read_timeout: float = 120.0,
        connect_timeout: float = 5.0,
        send_top_p: bool = False,
        endpoint_url: str | None = None,
    ) -> None:
        if not model_id:
            raise ConfigError("the Bedrock backend needs `model_id`")
        if api not in APIS:
            raise ConfigError(f"unknown Bedrock api {api!r}; set `api` to invoke or converse")
        self.name = f"bedrock:{model_id}"
        self.endpoints: tuple[str, ...] = (model_id,)
        self.model_id = model_id
        self.api = api
        self.send_top_p = send_top_p
        config = client_config(
            max_in_flight=max_in_flight, read_timeout=read_timeout, connect_timeout=connect_timeout
        )
        self._client: Any = make_client(
            "bedrock-runtime", region=region, config=config, endpoint_url=endpoint_url
        )

    def complete(
        self, request: CompletionRequest, endpoint: str | None = None
    ) -> CompletionResponse:
        """Call the model once and return its reply or raise BackendError."""
        model_id = endpoint or self.model_id
        label = f"Bedrock model {model_id!r}"
        with translated_errors(label):
            if self.api == "converse":
                response = self._client.converse(
                    **converse_arguments(model_id, request, send_top_p=self.send_top_p)
                )
                reply = parse_converse_reply(response)
                raw = json.dumps(
                    {key: response.get(key) for key in ("output", "stopReason", "usage")}
                )
            else:
                body = json.dumps(invoke_body(request, send_top_p=self.send_top_p))
                response = self._client.invoke_model(
                    modelId=model_id, body=body, contentType="application/json",
                    accept="application/json",
                )
                raw_bytes = response["body"].read()
                reply = parse_invoke_reply(raw_bytes)
                raw = raw_bytes.decode("utf-8", errors="replace")
        return reply.response(model_id, raw)

    def close(self) -> None:
        """Close the client's connection pool."""
        self._client.close()


def from_config(model: ModelConfig) -> BedrockBackend:
    """The Bedrock backend a [models.X] table describes (the registry's builder)."""
    return BedrockBackend(model.model_id, region=model.region, api=model.api,
                          max_in_flight=model.max_in_flight,
                          read_timeout=max(model.read_timeout, 120.0))


def remainder_from_config(model: ModelConfig) -> BedrockBackend:
    """The on-demand client of a bedrock-batch model, for the records a batch job leaves.

    The same model id on InvokeModel (Anthropic bodies) or Converse (Mistral and Llama, which
    InvokeModel would need their own bodies for).
    """
    api = "invoke" if batch_family(model.model_id) == "anthropic" else "converse"
    return BedrockBackend(model.model_id, region=model.region, api=api,
                          max_in_flight=model.max_in_flight,
                          read_timeout=max(model.read_timeout, 120.0))
