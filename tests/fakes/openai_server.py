"""Loopback OpenAI-compatible server: POST /v1/chat/completions and GET /v1/models."""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterable
from typing import Any

from tests.fakes.loopback import FakeServer, WireResponse, json_response, run_cli
from tests.fakes.scripting import (
    Behaviour,
    Fail,
    Malformed,
    RecordedRequest,
    Reply,
    Script,
    StreamError,
    Throttle,
)

_completion_ids = itertools.count(1)
# The status a scripted error class answers with on an OpenAI-compatible server.
OPENAI_STATUS = {
    "BadRequest": 400,
    "ValidationError": 400,
    "Unauthorized": 401,
    "NotFound": 404,
    "TooManyRequests": 429,
    "InternalServerError": 500,
    "InternalFailure": 500,
    "BadGateway": 502,
    "ServiceUnavailable": 503,
    "GatewayTimeout": 504,
}


def prompt_word_count(document: Any) -> int:
    """A rough prompt token count: the words of every text in the request."""
    if not isinstance(document, dict):
        return 0
    words = 0
    for message in document.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            words += len(content.split())
        elif isinstance(content, list):
            words += sum(len(str(part.get("text", "")).split()) for part in content
                         if isinstance(part, dict))
    inputs = document.get("inputs")
    return words + (len(inputs.split()) if isinstance(inputs, str) else 0)


def chat_completion(
    text: str, *, finish_reason: str, prompt_tokens: int, completion_tokens: int, model: str
) -> dict[str, Any]:
    """A `chat.completion` object as OpenAI-compatible servers return it."""
    return {
        "id": f"chatcmpl-{next(_completion_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish_reason,
            "logprobs": None,
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def reply_completion(reply: Reply, request: RecordedRequest, model: str) -> dict[str, Any]:
    """The chat.completion for a scripted Reply."""
    text = reply.text_for(request)
    return chat_completion(
        text,
        finish_reason=reply.finish_reason,
        prompt_tokens=reply.tokens_in if reply.tokens_in is not None
        else prompt_word_count(request.json),
        completion_tokens=reply.tokens_out_for(text),
        model=model,
    )


class OpenAIServer(FakeServer):
    """Answers chat completions per its Script; the script's endpoint key is the request's model."""

    def __init__(
        self,
        script: Script | None = None,
        *,
        port: int = 0,
        models: Iterable[str] = ("fake-model",),
        api_key: str | None = None,
        json_forms: Iterable[str] | None = None,
        refusal: str = "llama",
    ) -> None:
        super().__init__(script, port=port)
        self.models = tuple(models)
        self.api_key = api_key
        # The ways of asking for JSON this server takes (None: all); others are refused the
        # way `refusal` names: "llama" (500, pydantic text), "fastapi" (422 detail list),
        # "openai" (400 "Unrecognized request argument").
        self.json_forms = None if json_forms is None else frozenset(json_forms)
        self.refusal = refusal

    def route(self, method: str, path: str) -> tuple[str, str] | None:
        """Routes /v1/chat/completions (POST) and /v1/models (GET)."""
        path = path.split("?", 1)[0].rstrip("/")
        if method == "POST" and path == "/v1/chat/completions":
            return "", "chat"
        if method == "GET" and path == "/v1/models":
            return "", "models"
        return None

    def precheck(self, request: RecordedRequest) -> WireResponse | None:
        """Answer the model list, a wrong key (401) or a body that is not JSON (400)."""
        authorization = request.headers.get("Authorization")
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            shown = request.headers.get("Authorization", "")[len("Bearer "):]
            # Like real servers, echo the rejected key: the client must keep it out of its errors.
            return self._error(401, f"Incorrect API key provided: {shown}", "invalid_request_error")
        if request.operation == "models":
            return json_response(200, {
                "object": "list",
                "data": [{"id": m, "object": "model", "owned_by": "fake"} for m in self.models],
            })
        if not isinstance(request.json, dict):
            return self._error(400, "the body is not a JSON object", "invalid_request_error")
        return self._refuse_json_form(request.json)

    def _refuse_json_form(self, body: dict[str, Any]) -> WireResponse | None:
        """Refuse a JSON form this server does not take, as real servers of its kind do."""
        if self.json_forms is None:
            return None
        response_format = body.get("response_format")
        form = (response_format.get("type") if isinstance(response_format, dict)
                else "guided_json" if "guided_json" in body else None)
        if form in (None, "text") or form in self.json_forms:
            return None
        field = ["body", "guided_json"] if form == "guided_json" else [
            "body", "response_format", "type"]
        if self.refusal == "fastapi":
            return json_response(422, {"detail": [{
                "type": "extra_forbidden" if form == "guided_json" else "literal_error",
                "loc": field, "msg": "Extra inputs are not permitted"
                if form == "guided_json" else "Input should be 'text' or 'json_object'",
                "input": form}]})
        if self.refusal == "openai":
            return self._error(400, f"Unrecognized request argument supplied: {form}",
                               "invalid_request_error")
        message = (f"1 validation error:\n  {{'type': 'literal_error', 'loc': {tuple(field)}, "
                   f"'msg': \"Input should be 'text' or 'json_object'\", 'input': '{form}'}}")
        return self._error(500, message, "internal_server_error")

    def endpoint_of(self, routed: str, document: Any) -> str:
        """Key the script by the requested model, so one server can play several."""
        if isinstance(document, dict) and isinstance(document.get("model"), str):
            return document["model"]
        return routed

    def render(self, behaviour: Behaviour, request: RecordedRequest) -> WireResponse:
        """Chat completions, HTTP errors with an OpenAI error body, or a malformed body."""
        if isinstance(behaviour, Reply):
            model = str((request.json or {}).get("model") or self.models[0])
            return json_response(200, reply_completion(behaviour, request, model))
        if isinstance(behaviour, Throttle):
            return self._error(429, "Rate limit reached; slow down", "rate_limit_error")
        if isinstance(behaviour, Malformed):
            return self.malformed(behaviour)
        if isinstance(behaviour, StreamError):
            return self._error(500, behaviour.message, "server_error")
        assert isinstance(behaviour, Fail)
        status = behaviour.status or OPENAI_STATUS.get(behaviour.error_class, 500)
        return self._error(status, behaviour.message or "", behaviour.error_class)

    def _error(self, status: int, message: str, error_type: str) -> WireResponse:
        return json_response(
            status, {"error": {"message": message, "type": error_type, "code": status}}
        )


if __name__ == "__main__":
    sys.exit(run_cli(OpenAIServer))
