"""Loopback SageMaker runtime: /endpoints/{name}/invocations and /invocations-response-stream."""

from __future__ import annotations

import json
import re
import struct
import sys
import zlib
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

from tests.fakes.aws import FAKE_ACCOUNT, aws_error, request_id_header
from tests.fakes.loopback import (
    FakeServer,
    WireResponse,
    frames_of,
    run_cli,
)
from tests.fakes.openai_server import prompt_word_count, reply_completion
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

_PATH = re.compile(
    r"^/endpoints/(?P<name>[^/]+)/(?P<operation>invocations|invocations-response-stream)$"
)
_STRING_HEADER = 7
# Status of each SageMaker runtime error shape (botocore's sagemaker-runtime service-2.json).
SAGEMAKER_STATUS = {
    "ValidationError": 400,
    "ThrottlingException": 400,
    "AccessDeniedException": 403,
    "ModelNotReadyException": 429,
    "ModelError": 424,
    "InternalFailure": 500,
    "ServiceUnavailable": 503,
    "InternalDependencyException": 530,
}
_TGI_FINISH = {"stop": "eos_token", "length": "length", "stop_sequence": "stop_sequence"}


def event_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One binary event-stream message: prelude, its CRC, string headers, payload, message CRC."""
    encoded_headers = b"".join(
        bytes([len(name.encode())]) + name.encode() + bytes([_STRING_HEADER])
        + struct.pack(">H", len(value.encode())) + value.encode()
        for name, value in headers.items()
    )
    total_length = 12 + len(encoded_headers) + len(payload) + 4
    prelude = struct.pack(">II", total_length, len(encoded_headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded_headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def payload_part(data: bytes) -> bytes:
    """A PayloadPart event carrying raw model bytes."""
    return event_message(
        {":event-type": "PayloadPart", ":content-type": "application/octet-stream",
         ":message-type": "event"},
        data,
    )


def stream_exception(error_type: str, document: Mapping[str, Any]) -> bytes:
    """An exception message (e.g. ModelStreamError) inside the stream."""
    return event_message(
        {":exception-type": error_type, ":content-type": "application/json",
         ":message-type": "exception"},
        json.dumps(document).encode(),
    )


def schema_of(document: Any) -> str:
    """Guess the payload schema of a request body: messages, tgi (asks for details) or lmi."""
    if isinstance(document, dict) and "messages" in document:
        return "messages"
    parameters = document.get("parameters") if isinstance(document, dict) else None
    if isinstance(parameters, dict) and "details" in parameters:
        return "lmi" if "stop_sequences" in parameters else "tgi"
    return "lmi"


def split_tokens(text: str) -> list[str]:
    """Word-sized tokens that join back into `text`."""
    return re.findall(r"\s*\S+\s*?", text) or [text]


class SageMakerServer(FakeServer):
    """Speaks the SageMaker runtime wire: TGI / LMI / Messages replies, AWS errors, event streams.

    `endpoints` (if given) are the known names; others get ValidationError "not found".
    `schemas` forces an endpoint's reply schema instead of guessing it from the body.
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        port: int = 0,
        endpoints: Iterable[str] | None = None,
        schemas: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(script, port=port)
        self.endpoints = frozenset(endpoints) if endpoints is not None else None
        self.schemas = dict(schemas or {})

    def route(self, method: str, path: str) -> tuple[str, str] | None:
        """(endpoint name, "invocations" | "invocations-response-stream")."""
        found = _PATH.match(path.split("?", 1)[0]) if method == "POST" else None
        return (unquote(found["name"]), found["operation"]) if found else None

    def not_found(self, method: str, path: str) -> WireResponse:
        """SageMaker answers an unknown operation path with UnknownOperationException."""
        return aws_error(404, "UnknownOperationException", None,
                         namespace="com.amazon.coral.service")

    def precheck(self, request: RecordedRequest) -> WireResponse | None:
        """Unknown endpoints fail as the real service does."""
        if self.endpoints is not None and request.endpoint not in self.endpoints:
            return aws_error(
                400, "ValidationError",
                f"Endpoint {request.endpoint} of account {FAKE_ACCOUNT} not found.",
                namespace="com.amazon.coral.validate",
            )
        return None

    def render(self, behaviour: Behaviour, request: RecordedRequest) -> WireResponse:
        """Replies in the request's schema (streamed on the stream operation) and AWS errors."""
        streaming = request.operation == "invocations-response-stream"
        if isinstance(behaviour, Throttle):
            # The real service throttles with HTTP 400 and a null message.
            return aws_error(400, "ThrottlingException", None,
                             namespace="com.amazon.coral.availability")
        if isinstance(behaviour, Fail):
            return self._failure(behaviour, request)
        if isinstance(behaviour, StreamError):
            if not streaming:
                return self._failure(Fail("ModelError", behaviour.message, original_status=500),
                                     request)
            parts = self._stream_parts(Reply(behaviour.text), request)[: behaviour.parts_before]
            error = stream_exception(
                "ModelStreamError",
                {"Message": behaviour.message, "ErrorCode": behaviour.error_code},
            )
            return self._stream_response((*parts, error))
        if isinstance(behaviour, Malformed):
            if streaming:
                return self._stream_response((payload_part(b"data:" + behaviour.body + b"\n\n"),))
            return WireResponse(200, self._ok_headers("application/json"), behaviour.body)
        if streaming:
            return self._stream_response(self._stream_parts(behaviour, request))
        return WireResponse(
            200, self._ok_headers("application/json"),
            json.dumps(self._reply_document(behaviour, request)).encode(),
        )

    # --- replies -----------------------------------------------------------------------------
    def _schema(self, request: RecordedRequest) -> str:
        return self.schemas.get(request.endpoint) or schema_of(request.json)

    def _ok_headers(self, content_type: str) -> tuple[tuple[str, str], ...]:
        return (
            ("Content-Type", content_type),
            ("x-Amzn-Invoked-Production-Variant", "AllTraffic"),
            request_id_header(),
        )

    def _reply_document(self, reply: Reply, request: RecordedRequest) -> Any:
        schema = self._schema(request)
        if schema == "messages":
            return reply_completion(reply, request, "tgi")
        text = reply.text_for(request)
        if schema == "lmi":
            return {"generated_text": text}
        parameters = (request.json or {}).get("parameters") or {}
        generated: dict[str, Any] = {"generated_text": text}
        if parameters.get("details"):
            details: dict[str, Any] = {
                "finish_reason": _TGI_FINISH.get(reply.finish_reason, reply.finish_reason),
                "generated_tokens": reply.tokens_out_for(text),
                "seed": parameters.get("seed"),
            }
            # Real TGI fills prefill only on request; a scripted token count fills it too.
            if reply.tokens_in is not None or parameters.get("decoder_input_details"):
                count = reply.tokens_in if reply.tokens_in is not None else prompt_word_count(
                    request.json)
                details["prefill"] = [
                    {"id": i, "text": "t", "logprob": None} for i in range(count)
                ]
            generated["details"] = details
        return [generated]

    def _stream_lines(self, reply: Reply, request: RecordedRequest) -> list[bytes]:
        """The model's streamed lines: TGI `data:{...}` events, LMI JSON lines or chat chunks."""
        schema = self._schema(request)
        text = reply.text_for(request)
        tokens = split_tokens(text)
        lines: list[bytes] = []
        for index, token in enumerate(tokens):
            last = index == len(tokens) - 1
            if schema == "messages":
                event: dict[str, Any] = {
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"content": token},
                                 "finish_reason": reply.finish_reason if last else None}],
                }
            else:
                event = {
                    "index": index,
                    "token": {"id": index, "text": token, "logprob": -0.1, "special": False},
                    "generated_text": text if last else None,
                    "details": {
                        "finish_reason": _TGI_FINISH.get(reply.finish_reason, reply.finish_reason),
                        "generated_tokens": reply.tokens_out_for(text),
                        "seed": None,
                    } if last else None,
                }
            encoded = json.dumps(event)
            lines.append((f"{encoded}\n" if schema == "lmi" else f"data:{encoded}\n\n").encode())
        return lines

    def _stream_parts(self, reply: Reply, request: RecordedRequest) -> tuple[bytes, ...]:
        lines = self._stream_lines(reply, request)
        pieces = frames_of(b"".join(lines), reply.stream_chunk_bytes) if reply.stream_chunk_bytes \
            else tuple(lines)
        return tuple(payload_part(piece) for piece in pieces)

    def _stream_response(self, messages: tuple[bytes, ...]) -> WireResponse:
        return WireResponse(
            200,
            (
                ("Content-Type", "application/vnd.amazon.eventstream"),
                ("X-Amzn-SageMaker-Content-Type", "application/json"),
                ("x-Amzn-Invoked-Production-Variant", "AllTraffic"),
                request_id_header(),
            ),
            messages,
        )

    # --- errors ------------------------------------------------------------------------------
    def _failure(self, fail: Fail, request: RecordedRequest) -> WireResponse:
        status = fail.status or SAGEMAKER_STATUS.get(fail.error_class, 500)
        if fail.error_class != "ModelError":
            namespace = "com.amazon.coral.validate" if status == 400 else "com.amazon.coral.service"
            return aws_error(status, fail.error_class, fail.message, namespace=namespace)
        original = fail.original_status or 500
        if original == 429 and fail.message == "scripted failure":
            original_message = json.dumps(
                {"error": "Model is overloaded", "error_type": "overloaded"}
            )
        else:
            original_message = json.dumps({"error": fail.message, "error_type": "scripted"})
        side = "client" if 400 <= original < 500 else "server"
        log_group = f"/aws/sagemaker/Endpoints/{request.endpoint}"
        return aws_error(
            status,
            "ModelError",
            f"Received {side} error ({original}) from primary with message \"{original_message}\". "
            f"See https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1"
            f"#logEventViewer:group={log_group} in account {FAKE_ACCOUNT} for more information.",
            namespace="com.amazon.coral.service",
            OriginalStatusCode=original,
            OriginalMessage=original_message,
            LogStreamArn=f"arn:aws:logs:us-east-1:{FAKE_ACCOUNT}:log-group:{log_group}",
        )


if __name__ == "__main__":
    sys.exit(run_cli(SageMakerServer))
