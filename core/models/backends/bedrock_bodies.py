"""InvokeModel bodies per model family (Anthropic, Mistral, Meta) and reading their replies.

Batch jobs carry one InvokeModel body per record and return the model's reply body per record,
so the family decides both the request shape and how the reply is read.
"""

from __future__ import annotations

import json
from typing import Any

from visinstruct.core.config import batch_family
from visinstruct.core.models.backends.base import CompletionRequest
from visinstruct.core.models.backends.bedrock import invoke_body, parse_invoke_reply
from visinstruct.core.models.backends.mixtral import mixtral_prompt
from visinstruct.core.models.backends.replies import (
    ParsedReply,
    as_count,
    invalid,
    malformed,
    normal_finish_reason,
)

# Mistral's InvokeModel takes at most 10 stop sequences (the Bedrock model parameters page).
_MISTRAL_MAX_STOPS = 10


def llama_prompt(request: CompletionRequest) -> str:
    """Llama 3's chat template with the system text kept as its own header."""
    parts = ["<|begin_of_text|>"]
    for message in request.messages:
        parts.append(f"<|start_header_id|>{message.role}<|end_header_id|>\n\n"
                     f"{message.content}<|eot_id|>")
    parts.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(parts)


def request_body(model_id: str, request: CompletionRequest) -> dict[str, Any]:
    """The InvokeModel body `model_id` expects for `request`."""
    family = batch_family(model_id)
    if family == "anthropic":
        return invoke_body(request)
    if request.max_tokens < 1:
        raise invalid(f"max_tokens must be at least 1, got {request.max_tokens}")
    if any(m.images for m in request.messages):
        raise invalid(f"{model_id} reads text only; this request carries images")
    if family == "mistral":
        body: dict[str, Any] = {
            "prompt": mixtral_prompt(request.messages),
            "max_tokens": request.max_tokens,
            "temperature": min(max(request.temperature, 0.0), 1.0),
            "top_p": request.top_p,
        }
        if request.stop:
            body["stop"] = list(request.stop)[:_MISTRAL_MAX_STOPS]
        return body
    if family == "meta":
        return {
            "prompt": llama_prompt(request),
            "max_gen_len": request.max_tokens,
            "temperature": min(max(request.temperature, 0.0), 1.0),
            "top_p": request.top_p,
        }
    raise invalid(f"no InvokeModel body is known for {model_id!r}; use an anthropic., "
                  "mistral. or meta. model id")


def body_pictures(body: Any) -> int:
    """How many pictures an InvokeModel body carries (Anthropic Messages image parts)."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return 0
    return sum(1 for message in body["messages"] if isinstance(message, dict)
               and isinstance(message.get("content"), list)
               for part in message["content"]
               if isinstance(part, dict) and part.get("type") == "image")


def read_reply(model_id: str, output: Any) -> ParsedReply:
    """Read one model reply body (a batch record's modelOutput) of `model_id`'s family."""
    if not isinstance(output, dict):
        raise malformed("the model output is not a JSON object")
    family = batch_family(model_id)
    if family == "anthropic":
        return parse_invoke_reply(json.dumps(output).encode())
    if family == "mistral":
        outputs = output.get("outputs")
        if not isinstance(outputs, list) or not outputs or not isinstance(outputs[0], dict):
            raise malformed("the Mistral reply has no outputs[0]")
        first = outputs[0]
        text = first.get("text")
        if not isinstance(text, str):
            raise malformed("outputs[0].text is not a string")
        # Mistral replies carry no token counts: the job's manifest supplies them.
        return ParsedReply(text.strip(), normal_finish_reason(first.get("stop_reason")), 0, 0)
    if family == "meta":
        text = output.get("generation")
        if not isinstance(text, str):
            raise malformed("the Llama reply has no generation text")
        return ParsedReply(text.strip(), normal_finish_reason(output.get("stop_reason")),
                           as_count(output.get("prompt_token_count")),
                           as_count(output.get("generation_token_count")))
    raise malformed(f"no reply reader is known for {model_id!r}")
