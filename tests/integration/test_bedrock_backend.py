"""The Bedrock backend through the real boto3 client against the loopback Bedrock runtime."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.fakes.aws import aws_env
from tests.fakes.bedrock_server import BedrockServer
from tests.fakes.scripting import (
    Fail,
    Hang,
    Malformed,
    Reply,
    ResetMidBody,
    Script,
    Throttle,
)
from visinstruct.core.errors import BackendError
from visinstruct.core.models.backends.base import CompletionRequest, Message
from visinstruct.core.models.backends.bedrock import BedrockBackend

MODEL_ID = "anthropic.claude-3-5-sonnet-20240620-v1:0"


def picture(tmp_path: Path, image_format: str) -> bytes:
    """A small real image file, written and read back."""
    path = tmp_path / f"picture.{image_format.lower()}"
    Image.new("RGB", (8, 6), (200, 120, 40)).save(path, format=image_format)
    return path.read_bytes()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[BedrockServer]:
    with BedrockServer(Script(), model_ids=[MODEL_ID]) as server:
        aws_env(monkeypatch, bedrock_url=server.url)
        yield server


@pytest.fixture
def make_backend(fake: BedrockServer) -> Iterator[Any]:
    made: list[BedrockBackend] = []

    def make(**options: Any) -> BedrockBackend:
        backend = BedrockBackend(MODEL_ID, **{"read_timeout": 5.0, **options})
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def evaluation_request(image: bytes) -> CompletionRequest:
    return CompletionRequest(
        (
            Message("system", "You compare two answers about one picture."),
            Message("user", "Which answer is better?", (image,)),
        ),
        max_tokens=300, temperature=0.2, top_p=0.9, stop=("\n\nHuman:",),
    )


def test_invoke_sends_a_messages_body_with_a_base64_image(
    fake: BedrockServer, make_backend: Any, tmp_path: Path
) -> None:
    png = picture(tmp_path, "PNG")
    fake.script.push(MODEL_ID, Reply("Answer 1 is better.", tokens_in=1530, tokens_out=5))

    response = make_backend(api="invoke").complete(evaluation_request(png))

    received = fake.script.requests()[0]
    assert received.path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/invoke"
    assert received.json == {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 300,
        "system": "You compare two answers about one picture.",
        "messages": [{
            "role": "user",
            "content": [
                {"type": "image", "source": {
                    "type": "base64", "media_type": "image/png",
                    "data": base64.b64encode(png).decode()}},
                {"type": "text", "text": "Which answer is better?"},
            ],
        }],
        "temperature": 0.2,
        "stop_sequences": ["\n\nHuman:"],
    }
    assert (response.text, response.finish_reason) == ("Answer 1 is better.", "stop")
    assert (response.tokens_in, response.tokens_out) == (1530, 5)
    assert response.endpoint == MODEL_ID


def test_converse_sends_image_bytes_and_reads_usage(
    fake: BedrockServer, make_backend: Any, tmp_path: Path
) -> None:
    jpeg = picture(tmp_path, "JPEG")
    fake.script.push(MODEL_ID, Reply("Answer 2.", tokens_in=1400, tokens_out=3,
                                     finish_reason="length"))

    response = make_backend(api="converse").complete(evaluation_request(jpeg))

    received = fake.script.requests()[0]
    assert received.path.endswith("%3A0/converse")
    assert received.json == {
        "messages": [{
            "role": "user",
            "content": [
                {"image": {"format": "jpeg", "source": {"bytes": base64.b64encode(jpeg).decode()}}},
                {"text": "Which answer is better?"},
            ],
        }],
        "system": [{"text": "You compare two answers about one picture."}],
        "inferenceConfig": {"maxTokens": 300, "temperature": 0.2, "stopSequences": ["\n\nHuman:"]},
    }
    assert (response.text, response.finish_reason) == ("Answer 2.", "length")
    assert (response.tokens_in, response.tokens_out) == (1400, 3)


def test_top_p_is_sent_only_when_asked(fake: BedrockServer, make_backend: Any) -> None:
    request = CompletionRequest((Message("user", "hi"),), temperature=0.4, top_p=0.8)
    make_backend(api="invoke", send_top_p=True).complete(request)
    make_backend(api="converse", send_top_p=True).complete(request)

    invoke_body, converse_body = fake.script.bodies()
    assert invoke_body["top_p"] == 0.8
    assert converse_body["inferenceConfig"]["topP"] == 0.8


def test_unknown_image_format_is_refused_before_sending(
    fake: BedrockServer, make_backend: Any
) -> None:
    request = CompletionRequest((Message("user", "look", (b"not an image",)),))

    with pytest.raises(BackendError) as caught:
        make_backend().complete(request)

    assert (caught.value.kind, caught.value.error_class) == (
        BackendError.PERMANENT, "InvalidParameters")
    assert fake.script.count() == 0


@pytest.mark.parametrize("api", ["invoke", "converse"])
@pytest.mark.parametrize(
    ("behaviour", "kind", "error_class", "status"),
    [
        (Throttle(), BackendError.BACKPRESSURE, "ThrottlingException", 429),
        (Fail("ServiceQuotaExceededException"), BackendError.BACKPRESSURE,
         "ServiceQuotaExceededException", 400),
        (Fail("ModelNotReadyException"), BackendError.BACKPRESSURE, "ModelNotReadyException", 429),
        (Fail("ServiceUnavailableException"), BackendError.BACKPRESSURE,
         "ServiceUnavailableException", 503),
        (Fail("ModelTimeoutException"), BackendError.TRANSIENT, "ModelTimeoutException", 408),
        (Fail("InternalServerException"), BackendError.TRANSIENT, "InternalServerException", 500),
        (Fail("ModelErrorException", original_status=500), BackendError.TRANSIENT,
         "ModelErrorException", 424),
        (ResetMidBody(), BackendError.TRANSIENT, "ConnectionReset", None),
        (Malformed(b'{"content": [{"type": "text", "te'), BackendError.TRANSIENT,
         "MalformedResponse", None),
        (Fail("ValidationException"), BackendError.PERMANENT, "ValidationException", 400),
        (Fail("AccessDeniedException"), BackendError.PERMANENT, "AccessDeniedException", 403),
    ],
    ids=lambda value: getattr(value, "error_class", type(value).__name__)
    if not isinstance(value, (str, int, type(None))) else str(value),
)
def test_each_failure_is_classified_and_sent_once(
    fake: BedrockServer, make_backend: Any, api: str, behaviour: Any, kind: str,
    error_class: str, status: int | None,
) -> None:
    if api == "converse" and isinstance(behaviour, ResetMidBody):
        # botocore reads a non-streaming body without checking its length: a cut body arrives
        # as unparseable JSON, still transient.
        error_class = "MalformedResponse"
    fake.script.push(MODEL_ID, behaviour)

    with pytest.raises(BackendError) as caught:
        make_backend(api=api).complete(CompletionRequest((Message("user", "hi"),)))

    error = caught.value
    assert (error.kind, error.error_class, error.status) == (kind, error_class, status)
    assert MODEL_ID in str(error)
    assert fake.script.count() == 1  # botocore did not retry


def test_reply_slower_than_read_timeout_is_transient_and_not_retried(
    fake: BedrockServer, make_backend: Any
) -> None:
    fake.script.push(MODEL_ID, Hang(seconds=20))
    started = time.monotonic()

    with pytest.raises(BackendError) as caught:
        make_backend(api="converse", read_timeout=0.5).complete(
            CompletionRequest((Message("user", "hi"),)))

    assert (caught.value.kind, caught.value.error_class) == (BackendError.TRANSIENT, "ReadTimeout")
    assert time.monotonic() - started < 5
    assert fake.script.count() == 1


def test_unknown_model_id_is_permanent(fake: BedrockServer, make_backend: Any) -> None:
    with pytest.raises(BackendError) as caught:
        make_backend().complete(CompletionRequest((Message("user", "hi"),)),
                                endpoint="anthropic.unknown-v1:0")

    assert (caught.value.kind, caught.value.error_class) == (
        BackendError.PERMANENT, "ValidationException")
