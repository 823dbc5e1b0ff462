"""SageMaker real-time endpoints (`sagemaker-runtime`) speaking TGI, LMI or Messages payloads."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from visinstruct.core.config import ModelConfig
from visinstruct.core.errors import ConfigError
from visinstruct.core.models.backends.aws_client import (
    client_config,
    make_client,
    translated_errors,
)
from visinstruct.core.models.backends.base import CompletionRequest, CompletionResponse
from visinstruct.core.models.backends.deadline import call_deadline, cut_socket, socket_of
from visinstruct.core.models.backends.replies import ParsedReply
from visinstruct.core.models.backends.sagemaker_payloads import (
    SCHEMAS,
    StreamAssembler,
    build_body,
    parse_body,
)


class SageMakerBackend:
    """SageMaker endpoints serving one model through one shared, thread-safe client.

    The client never retries: the pool owns retries and needs every failure classified at once.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        schema: str = "tgi",
        region: str = "us-east-1",
        max_in_flight: int = 64,
        read_timeout: float = 75.0,
        call_timeout: float = 600.0,
        connect_timeout: float = 5.0,
        stream: bool = False,
        model_name: str = "mixtral",
        endpoint_url: str | None = None,
    ) -> None:
        if not endpoints:
            raise ConfigError(
                "the SageMaker backend needs at least one endpoint name in `endpoints`"
            )
        if schema not in SCHEMAS:
            raise ConfigError(
                f"unknown SageMaker schema {schema!r}; set `schema` to one of {', '.join(SCHEMAS)}"
            )
        self.name = f"sagemaker:{model_name}"
        self.endpoints: tuple[str, ...] = tuple(endpoints)
        self.schema = schema
        self.stream = stream
        self.call_timeout = call_timeout
        # Every endpoint shares one host, hence one urllib3 pool: size it for all of them.
        config = client_config(
            max_in_flight=max_in_flight * len(self.endpoints),
            read_timeout=read_timeout,
            connect_timeout=connect_timeout,
        )
        self._client: Any = make_client(
            "sagemaker-runtime", region=region, config=config, endpoint_url=endpoint_url
        )

    def complete(
        self, request: CompletionRequest, endpoint: str | None = None
    ) -> CompletionResponse:
        """Invoke `endpoint` (default: the first) once; return its reply or raise BackendError."""
        target = endpoint or self.endpoints[0]
        label = f"SageMaker endpoint {target!r}"
        with translated_errors(label):
            body = json.dumps(build_body(self.schema, request, stream=self.stream)).encode()
            if self.stream:
                reply, raw, variant = self._invoke_streaming(target, body)
            else:
                reply, raw, variant = self._invoke(target, body)
        return reply.response(target, raw, {"variant": variant} if variant else None)

    def _invoke(self, target: str, body: bytes) -> tuple[ParsedReply, str, str]:
        response = self._client.invoke_endpoint(
            EndpointName=target, Body=body, ContentType="application/json",
            Accept="application/json",
        )
        raw_bytes = response["Body"].read()
        raw = raw_bytes.decode("utf-8", errors="replace")
        variant = str(response.get("InvokedProductionVariant") or "")
        return parse_body(self.schema, raw_bytes), raw, variant

    def _invoke_streaming(self, target: str, body: bytes) -> tuple[ParsedReply, str, str]:
        response = self._client.invoke_endpoint_with_response_stream(
            EndpointName=target, Body=body, ContentType="application/json",
            Accept="application/json",
        )
        assembler = StreamAssembler()
        event_stream = response["Body"]
        # Each read is bounded by read_timeout; a stream of small late events, by this.
        sock = socket_of(getattr(event_stream, "_raw_stream", None))
        with call_deadline(self.call_timeout, lambda: cut_socket(sock)) as deadline:
            try:
                for event in event_stream:
                    if deadline.expired:
                        break
                    part = event.get("PayloadPart")
                    if part is not None:
                        assembler.feed(part.get("Bytes", b""))
            except Exception as error:
                if deadline.expired:
                    raise deadline.error() from error
                raise
            finally:
                event_stream.close()
            if deadline.expired:
                raise deadline.error()
        reply = assembler.finish()
        raw = bytes(assembler.raw).decode("utf-8", errors="replace")
        return reply, raw, str(response.get("InvokedProductionVariant") or "")

    def close(self) -> None:
        """Close the client's connection pool."""
        self._client.close()


def from_config(model: ModelConfig) -> SageMakerBackend:
    """The SageMaker backend a [models.X] table describes (the registry's builder)."""
    return SageMakerBackend(model.endpoints, schema=model.schema, region=model.region,
                            max_in_flight=model.max_in_flight, read_timeout=model.read_timeout,
                            call_timeout=model.call_timeout, stream=model.stream,
                            model_name=model.name)
