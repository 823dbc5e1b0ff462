"""The OpenAI-compatible backend against the loopback chat-completions server."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.openai_server import OpenAIServer
from tests.fakes.scripting import (
    Fail,
    Hang,
    Malformed,
    Reply,
    ResetMidBody,
    Script,
    Throttle,
)
from visinstruct.core.errors import BackendError, ConfigError
from visinstruct.core.models.backends.base import CompletionRequest, Message
from visinstruct.core.models.backends.openai import OpenAIBackend

MODEL = "mixtral-8x7b-instruct"
API_KEY = "sk-test-0123456789abcdef"
SCHEMA = {"type": "object", "properties": {"score": {"type": "integer"}}}
REQUEST = CompletionRequest(
    (Message("system", "You rate answers."), Message("user", "Rate this answer.")),
    max_tokens=50, temperature=0.1, top_p=0.9, stop=("\n\n",), json_schema=SCHEMA, seed=3,
)


@pytest.fixture
def fake() -> Iterator[OpenAIServer]:
    with OpenAIServer(Script(), models=[MODEL], api_key=API_KEY) as server:
        yield server


@pytest.fixture
def make_backend(fake: OpenAIServer) -> Iterator[Any]:
    made: list[OpenAIBackend] = []

    def make(**options: Any) -> OpenAIBackend:
        settings = {"model": MODEL, "api_key": API_KEY, "read_timeout": 5.0, **options}
        backend = OpenAIBackend(settings.pop("base_url", f"{fake.url}/v1"), **settings)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def failure_of(backend: OpenAIBackend, request: CompletionRequest = REQUEST) -> BackendError:
    with pytest.raises(BackendError) as caught:
        backend.complete(request)
    return caught.value


def test_round_trip_sends_the_chat_body_with_bearer_key(
    fake: OpenAIServer, make_backend: Any
) -> None:
    fake.script.push(MODEL, Reply('{"score": 8}', tokens_in=120, tokens_out=5))

    response = make_backend().complete(REQUEST)

    received = fake.script.requests()[0]
    assert received.path == "/v1/chat/completions"
    assert received.headers["Authorization"] == f"Bearer {API_KEY}"
    assert received.json == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You rate answers."},
            {"role": "user", "content": "Rate this answer."},
        ],
        "max_tokens": 50, "temperature": 0.1, "top_p": 0.9, "stop": ["\n\n"], "seed": 3,
        "response_format": {
            "type": "json_schema", "json_schema": {"name": "output", "schema": SCHEMA},
        },
    }
    assert (response.text, response.finish_reason) == ('{"score": 8}', "stop")
    assert (response.tokens_in, response.tokens_out) == (120, 5)
    assert response.endpoint == f"{fake.url}/v1"


def test_guided_json_none_and_folded_system(fake: OpenAIServer, make_backend: Any) -> None:
    make_backend(json_mode="guided_json", fold_system_role=True).complete(REQUEST)
    make_backend(json_mode="none").complete(REQUEST)

    guided, plain = fake.script.bodies()
    assert guided["guided_json"] == SCHEMA and "response_format" not in guided
    folded = "You rate answers.\n\nRate this answer."
    assert guided["messages"] == [{"role": "user", "content": folded}]
    assert "guided_json" not in plain and "response_format" not in plain


def test_base_url_and_key_come_from_the_environment(
    fake: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"{fake.url}/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    backend = OpenAIBackend(None, model=MODEL)

    assert backend.complete(REQUEST).text == "ok"
    assert backend.endpoints == (f"{fake.url}/v1",)
    backend.close()


def test_missing_base_url_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)

    with pytest.raises(ConfigError, match="OPENAI_BASE_URL"):
        OpenAIBackend(None, model=MODEL)


def test_images_become_data_urls(fake: OpenAIServer, make_backend: Any) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
    make_backend().complete(CompletionRequest((Message("user", "Describe it.", (png,)),)))

    content = fake.script.bodies()[0]["messages"][0]["content"]
    assert content == [
        {"type": "image_url",
         "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()}},
        {"type": "text", "text": "Describe it."},
    ]


@pytest.mark.parametrize(
    ("behaviour", "kind", "error_class", "status"),
    [
        (Throttle(), BackendError.BACKPRESSURE, "TooManyRequests", 429),
        (Fail("ServiceUnavailable"), BackendError.BACKPRESSURE, "ServiceUnavailable", 503),
        (Fail("InternalServerError"), BackendError.TRANSIENT, "InternalServerError", 500),
        (Fail("BadGateway"), BackendError.TRANSIENT, "BadGateway", 502),
        (Fail("GatewayTimeout"), BackendError.TRANSIENT, "GatewayTimeout", 504),
        (ResetMidBody(), BackendError.TRANSIENT, "ConnectionReset", None),
        (Malformed(b'{"choices": [{"message": '), BackendError.TRANSIENT, "MalformedResponse",
         None),
        (Fail("BadRequest"), BackendError.PERMANENT, "BadRequest", 400),
        (Fail("NotFound"), BackendError.PERMANENT, "NotFound", 404),
    ],
    ids=lambda value: getattr(value, "error_class", type(value).__name__)
    if not isinstance(value, (str, int, type(None))) else str(value),
)
def test_each_failure_is_classified_and_sent_once(
    fake: OpenAIServer, make_backend: Any, behaviour: Any, kind: str, error_class: str,
    status: int | None,
) -> None:
    fake.script.push(MODEL, behaviour)
    backend = make_backend()

    error = failure_of(backend)

    assert (error.kind, error.error_class, error.status) == (kind, error_class, status)
    assert fake.script.count() == 1
    assert backend.complete(REQUEST).text == "ok"  # the next call works on a fresh connection


def test_reply_slower_than_read_timeout_is_transient_and_sent_once(
    fake: OpenAIServer, make_backend: Any
) -> None:
    fake.script.push(MODEL, Hang(seconds=20))
    started = time.monotonic()

    error = failure_of(make_backend(read_timeout=0.5))

    assert (error.kind, error.error_class) == (BackendError.TRANSIENT, "ReadTimeout")
    assert time.monotonic() - started < 5
    assert fake.script.count() == 1


def test_rejected_key_never_appears_in_the_error(fake: OpenAIServer, make_backend: Any) -> None:
    wrong_key = "sk-wrong-key-that-must-stay-secret"

    error = failure_of(make_backend(api_key=wrong_key))

    assert (error.kind, error.error_class, error.status) == (
        BackendError.PERMANENT, "Unauthorized", 401)
    assert wrong_key not in str(error)
    assert "***" in str(error)  # the server echoed it; the backend masked it


def test_connection_refused_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    backend = OpenAIBackend(f"http://127.0.0.1:{closed_port}/v1", model=MODEL, api_key=API_KEY)

    error = failure_of(backend)

    assert (error.kind, error.error_class) == (BackendError.TRANSIENT, "ConnectError")
    assert API_KEY not in str(error)


def test_keep_alive_connection_is_reused_and_replaced_when_the_server_drops_it(
    fake: OpenAIServer, make_backend: Any
) -> None:
    backend = make_backend()
    backend.complete(REQUEST)
    backend.complete(REQUEST)
    assert len(backend._all_connections) == 1

    fake.drop_idle_connections()

    assert backend.complete(REQUEST).text == "ok"
    assert fake.script.count() == 3


def test_several_base_urls_are_several_endpoints(make_backend: Any, fake: OpenAIServer) -> None:
    with OpenAIServer(Script(Reply("second")), models=[MODEL]) as second:
        backend = make_backend(base_url=None, base_urls=[f"{fake.url}/v1", f"{second.url}/v1"])

        response = backend.complete(REQUEST, endpoint=f"{second.url}/v1")

        assert backend.endpoints == (f"{fake.url}/v1", f"{second.url}/v1")
        assert (response.text, response.endpoint) == ("second", f"{second.url}/v1")
        assert (fake.script.count(), second.script.count()) == (0, 1)


def test_model_list_is_served(fake: OpenAIServer) -> None:
    import json
    import urllib.request

    request = urllib.request.Request(
        f"{fake.url}/v1/models", headers={"Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(request, timeout=5) as reply:
        listed = json.loads(reply.read())

    assert [model["id"] for model in listed["data"]] == [MODEL]


@pytest.mark.parametrize("count", ["9" * 5000, str(10**30), "-7"])
def test_an_absurd_token_count_is_ignored_and_the_reply_kept(
    fake: OpenAIServer, make_backend: Any, count: str
) -> None:
    body = ('{"choices": [{"message": {"role": "assistant", "content": "a good answer"}, '
            '"finish_reason": "stop"}], "usage": {"prompt_tokens": 12, '
            f'"completion_tokens": {count}}}}}').encode()
    fake.script.push(MODEL, Malformed(body))
    reply = make_backend().complete(REQUEST)
    assert (reply.text, reply.tokens_in, reply.tokens_out) == ("a good answer", 12, 0)
