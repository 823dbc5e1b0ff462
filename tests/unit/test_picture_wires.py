"""Each wire carries a picture its own way, and the text-only ones refuse one."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from PIL import Image as PILImage

from visinstruct.core.errors import BackendError
from visinstruct.core.models.backends.base import CompletionRequest, Message
from visinstruct.core.models.backends.bedrock import converse_arguments, invoke_body
from visinstruct.core.models.backends.bedrock_bodies import request_body
from visinstruct.core.models.backends.openai import chat_body
from visinstruct.core.models.backends.sagemaker_payloads import build_body
from visinstruct.core.models.batch_calls import Outgoing, record_bytes, record_line
from visinstruct.core.models.pictures import prepare_bytes
from visinstruct.core.store.batch_jobs import BatchRecord


def red_picture() -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (1600, 900), (220, 10, 10)).save(buffer, format="PNG")
    return prepare_bytes(buffer.getvalue(), 512).data


PICTURE = red_picture()
REQUEST = CompletionRequest(messages=(Message("system", "Be brief."),
                                      Message("user", "What colour is it?", (PICTURE,))),
                            max_tokens=64)


def from_data_uri(url: str) -> bytes:
    head, _, data = url.partition(",")
    assert head == "data:image/jpeg;base64"
    return base64.b64decode(data)


def check(data: bytes) -> None:
    assert data == PICTURE
    shown = PILImage.open(io.BytesIO(data))
    assert max(shown.size) <= 512
    red = shown.convert("RGB").getpixel((10, 10))
    assert isinstance(red, tuple) and red[0] > 180


def content_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    users = [m for m in body["messages"] if m["role"] == "user"]
    assert len(users) == 1
    content = users[0]["content"]
    assert isinstance(content, list)
    return content


@pytest.mark.parametrize("make", [
    lambda: build_body("messages", REQUEST),
    lambda: chat_body("served", REQUEST, json_mode="none", fold_system_role=False),
    lambda: chat_body("served", REQUEST, json_mode="none", fold_system_role=True),
])
def test_chat_completions_wires_send_an_image_url_data_uri_before_the_text(make: Any) -> None:
    parts = content_of(make())
    assert [p["type"] for p in parts] == ["image_url", "text"]
    check(from_data_uri(parts[0]["image_url"]["url"]))
    assert "What colour is it?" in parts[1]["text"]


def test_bedrock_converse_sends_an_image_block() -> None:
    parts = content_of(converse_arguments("us.amazon.nova-lite-v1:0", REQUEST))
    assert parts[0]["image"]["format"] == "jpeg"
    check(parts[0]["image"]["source"]["bytes"])
    assert parts[1] == {"text": "What colour is it?"}


@pytest.mark.parametrize("body", [
    invoke_body(REQUEST), request_body("us.anthropic.claude-3-haiku-20240307-v1:0", REQUEST)])
def test_bedrock_messages_bodies_send_a_base64_source(body: dict[str, Any]) -> None:
    parts = content_of(body)
    assert parts[0]["type"] == "image" and parts[0]["source"]["type"] == "base64"
    assert parts[0]["source"]["media_type"] == "image/jpeg"
    check(base64.b64decode(parts[0]["source"]["data"]))


def test_a_batch_record_carries_the_same_body_and_is_measured_whole() -> None:
    body = request_body("anthropic.claude-3-haiku-20240307-v1:0", REQUEST)
    record = BatchRecord(key="k", record_id="r1", image_id=1, task="detail",
                         prompt_version="v", request_hash="h")
    outgoing = Outgoing(record, body)
    assert record_bytes(outgoing) == len(record_line(outgoing).encode()) + 1
    assert record_bytes(outgoing) > len(PICTURE) * 4 // 3


@pytest.mark.parametrize("make", [
    lambda: build_body("tgi", REQUEST), lambda: build_body("lmi", REQUEST),
    lambda: request_body("mistral.mixtral-8x7b-instruct-v0:1", REQUEST),
    lambda: request_body("meta.llama3-70b-instruct-v1:0", REQUEST),
])
def test_text_prompt_wires_refuse_a_picture_instead_of_dropping_it(make: Any) -> None:
    with pytest.raises(BackendError) as caught:
        make()
    assert caught.value.kind == BackendError.PERMANENT
