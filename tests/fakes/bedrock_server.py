"""Loopback Bedrock runtime: POST /model/{model id}/invoke and /model/{model id}/converse."""

from __future__ import annotations

import itertools
import json
import re
import sys
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from tests.fakes.aws import aws_error, request_id_header
from tests.fakes.loopback import FakeServer, WireResponse, json_response, run_cli
from tests.fakes.scripting import (
    Behaviour,
    Fail,
    Malformed,
    RecordedRequest,
    Script,
    StreamError,
    Throttle,
)

_PATH = re.compile(r"^/model/(?P<model>[^/]+)/(?P<operation>invoke|converse)$")
_message_ids = itertools.count(1)
# Status of each Bedrock runtime error shape (botocore's bedrock-runtime service-2.json).
BEDROCK_STATUS = {
    "ValidationException": 400,
    "ServiceQuotaExceededException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ModelNotReadyException": 429,
    "ThrottlingException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "stop_sequence": "stop_sequence"}


def _words(value: Any) -> int:
    """Words of every "text" string anywhere in a request body: a rough input token count."""
    if isinstance(value, dict):
        return sum(
            len(item.split()) if key in ("text", "system") and isinstance(item, str)
            else _words(item)
            for key, item in value.items()
        )
    if isinstance(value, list):
        return sum(_words(item) for item in value)
    return 0


class BedrockServer(FakeServer):
    """Speaks the Bedrock runtime wire for InvokeModel (Anthropic Messages) and Converse.

    The script's endpoint key is the decoded model id; `model_ids` (if given) are the known ids.
    """

    def __init__(
        self, script: Script | None = None, *, port: int = 0, model_ids: Iterable[str] | None = None
    ) -> None:
        super().__init__(script, port=port)
        self.model_ids = frozenset(model_ids) if model_ids is not None else None

    def route(self, method: str, path: str) -> tuple[str, str] | None:
        """(model id, "invoke" | "converse"); boto3 percent-encodes the ':' of model ids."""
        found = _PATH.match(path.split("?", 1)[0]) if method == "POST" else None
        return (unquote(found["model"]), found["operation"]) if found else None

    def not_found(self, method: str, path: str) -> WireResponse:
        """An unknown path."""
        return aws_error(404, "UnknownOperationException", None,
                         namespace="com.amazon.coral.service")

    def precheck(self, request: RecordedRequest) -> WireResponse | None:
        """Unknown model ids and bodies that are not JSON fail as on the real service."""
        if self.model_ids is not None and request.endpoint not in self.model_ids:
            return aws_error(
                400, "ValidationException", "The provided model identifier is invalid.",
                namespace="com.amazon.bedrock",
            )
        if not isinstance(request.json, dict):
            return aws_error(400, "ValidationException", "Malformed input request, please "
                             "reformat your input and try again.", namespace="com.amazon.bedrock")
        return None

    def render(self, behaviour: Behaviour, request: RecordedRequest) -> WireResponse:
        """Anthropic Messages or Converse replies, Bedrock errors, or a malformed body."""
        if isinstance(behaviour, Throttle):
            return aws_error(429, "ThrottlingException",
                             "Too many requests, please wait before trying again.",
                             namespace="com.amazon.bedrock")
        if isinstance(behaviour, StreamError):
            behaviour = Fail("ModelErrorException", behaviour.message, original_status=500)
        if isinstance(behaviour, Fail):
            status = behaviour.status or BEDROCK_STATUS.get(behaviour.error_class, 500)
            extra: dict[str, Any] = {}
            if behaviour.error_class == "ModelErrorException":
                extra = {"originalStatusCode": behaviour.original_status or 500,
                         "resourceName": request.endpoint}
            return aws_error(status, behaviour.error_class, behaviour.message,
                             namespace="com.amazon.bedrock", **extra)
        if isinstance(behaviour, Malformed):
            return WireResponse(200, (("Content-Type", "application/json"),), behaviour.body)
        text = behaviour.text_for(request)
        tokens_in = behaviour.tokens_in if behaviour.tokens_in is not None else _words(request.json)
        tokens_out = behaviour.tokens_out_for(text)
        stop_reason = _STOP_REASONS.get(behaviour.finish_reason, behaviour.finish_reason)
        if request.operation == "converse":
            return json_response(200, {
                "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                "stopReason": stop_reason,
                "usage": {"inputTokens": tokens_in, "outputTokens": tokens_out,
                          "totalTokens": tokens_in + tokens_out},
                "metrics": {"latencyMs": int(behaviour.latency_s * 1000)},
            }, request_id_header())
        document = {
            "id": f"msg_bdrk_{next(_message_ids):08d}",
            "type": "message",
            "role": "assistant",
            "model": request.endpoint,
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out},
        }
        return WireResponse(
            200,
            (
                ("Content-Type", "application/json"),
                ("X-Amzn-Bedrock-Input-Token-Count", str(tokens_in)),
                ("X-Amzn-Bedrock-Output-Token-Count", str(tokens_out)),
                ("X-Amzn-Bedrock-Invocation-Latency", str(int(behaviour.latency_s * 1000))),
                request_id_header(),
            ),
            json.dumps(document).encode(),
        )


if __name__ == "__main__":
    sys.exit(run_cli(BedrockServer))
