"""json_mode auto: each server gets the richest JSON form it takes; a refusal is permanent."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.openai_server import OpenAIServer
from tests.fakes.scripting import Fail, Reply, Script
from visinstruct.core.errors import BackendError
from visinstruct.core.models.backends.base import CompletionRequest, Message
from visinstruct.core.models.backends.openai import OpenAIBackend
from visinstruct.core.models.pool import Pool

MODEL = "served-model"
SCHEMA = {"type": "object", "properties": {"score": {"type": "integer"}}}
REQUEST = CompletionRequest((Message("user", "Rate it."),), max_tokens=20, json_schema=SCHEMA)


def form_of(body: dict[str, Any]) -> str:
    """Which JSON form a recorded request body asked for."""
    if "response_format" in body:
        return str(body["response_format"]["type"])
    return "guided_json" if "guided_json" in body else "none"


@pytest.fixture
def backends() -> Iterator[list[OpenAIBackend]]:
    made: list[OpenAIBackend] = []
    yield made
    for backend in made:
        backend.close()


def make(made: list[OpenAIBackend], urls: list[str], **options: Any) -> OpenAIBackend:
    backend = OpenAIBackend(urls[0], base_urls=urls, model=MODEL, read_timeout=5.0, **options)
    made.append(backend)
    return backend


@pytest.mark.parametrize(("takes", "refusal", "expected"), [
    ({"json_object"}, "llama", ["json_schema", "json_object", "json_object"]),
    ({"guided_json"}, "fastapi", ["json_schema", "json_object", "guided_json", "guided_json"]),
    ({"guided_json"}, "openai", ["json_schema", "json_object", "guided_json", "guided_json"]),
    (set(), "llama", ["json_schema", "json_object", "guided_json", "none", "none"]),
    ({"json_schema"}, "llama", ["json_schema", "json_schema"]),
], ids=["llama.cpp", "vllm-422", "openai-400", "takes-none", "openai"])
def test_auto_steps_down_once_and_remembers(
    takes: set[str], refusal: str, expected: list[str], backends: list[OpenAIBackend]
) -> None:
    with OpenAIServer(Script(), models=[MODEL], json_forms=takes, refusal=refusal) as fake:
        fake.script.push(MODEL, Reply('{"score": 7}'), Reply('{"score": 8}'))
        backend = make(backends, [f"{fake.url}/v1"])
        first = backend.complete(REQUEST)
        second = backend.complete(REQUEST)
        sent = [form_of(body) for body in fake.script.bodies()]
    assert (first.text, second.text) == ('{"score": 7}', '{"score": 8}')
    assert sent == expected
    assert second.extra["json_mode"] == expected[-1]


def test_each_endpoint_keeps_its_own_form(backends: list[OpenAIBackend]) -> None:
    with OpenAIServer(Script(), models=[MODEL], json_forms={"json_object"}) as llama, \
            OpenAIServer(Script(), models=[MODEL]) as openai_like:
        for server in (llama, openai_like):
            server.script.push(MODEL, Reply("{}"), Reply("{}"))
        urls = [f"{llama.url}/v1", f"{openai_like.url}/v1"]
        backend = make(backends, urls)
        for url in urls * 2:
            backend.complete(REQUEST, url)
        assert [form_of(b) for b in llama.script.bodies()] == [
            "json_schema", "json_object", "json_object"]
        assert [form_of(b) for b in openai_like.script.bodies()] == ["json_schema"] * 2


def test_concurrent_calls_step_down_together(backends: list[OpenAIBackend]) -> None:
    with OpenAIServer(Script(), models=[MODEL], json_forms={"json_object"}) as fake:
        fake.script.push(MODEL, *[Reply("{}")] * 8)
        backend = make(backends, [f"{fake.url}/v1"])
        errors: list[BaseException] = []
        start = threading.Barrier(8)

        def call() -> None:
            start.wait()
            try:
                backend.complete(REQUEST)
            except BaseException as error:  # noqa: BLE001 - collected for the assert
                errors.append(error)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sent = [form_of(body) for body in fake.script.bodies()]
    assert errors == []
    assert sent.count("json_object") == 8 and set(sent) == {"json_schema", "json_object"}
    assert "guided_json" not in sent  # one refusal per form, however many saw it


def test_a_fixed_mode_refused_by_the_server_is_permanent_and_sent_once(
    backends: list[OpenAIBackend],
) -> None:
    with OpenAIServer(Script(), models=[MODEL], json_forms={"json_object"}) as fake:
        backend = make(backends, [f"{fake.url}/v1"], json_mode="response_format")
        pool = Pool(backend, model="m", max_in_flight=2, attempts=4, sleep=lambda _: None)
        listener = _Listener()
        with pytest.raises(BackendError) as caught:
            pool.call(REQUEST, listener)
        assert len(fake.script.bodies()) == 1
    error = caught.value
    assert error.kind == BackendError.PERMANENT and error.status == 500
    assert error.error_class == "InvalidRequest"
    assert "response_format" in str(error) and "json_object" in str(error)
    assert 'json_mode = "auto"' in str(error)
    assert listener.failures == [False]  # no retry
    assert pool.snapshots()[0].health != "down"


def test_a_plain_server_error_stays_transient(backends: list[OpenAIBackend]) -> None:
    with OpenAIServer(Script(), models=[MODEL]) as fake:
        fake.script.push(MODEL, Fail("InternalServerError", "CUDA out of memory"))
        backend = make(backends, [f"{fake.url}/v1"])
        with pytest.raises(BackendError) as caught:
            backend.complete(REQUEST)
    assert caught.value.kind == BackendError.TRANSIENT


def test_a_refusal_naming_other_fields_does_not_step_down(backends: list[OpenAIBackend]) -> None:
    with OpenAIServer(Script(), models=[MODEL]) as fake:
        fake.script.push(MODEL, Fail("BadRequest", "max_tokens: Input should be less than 4096",
                                     status=500))
        backend = make(backends, [f"{fake.url}/v1"])
        with pytest.raises(BackendError) as caught:
            backend.complete(REQUEST)
        assert [form_of(b) for b in fake.script.bodies()] == ["json_schema"]
    assert caught.value.kind == BackendError.PERMANENT


class _Listener:
    """Records the pool's attempts as the ledger would."""

    def __init__(self) -> None:
        self.failures: list[bool] = []

    def started(self, endpoint: str, attempt: int) -> int:
        return attempt

    def failed(self, call_id: Any, error: BackendError, latency_ms: float,
               will_retry: bool) -> None:
        self.failures.append(will_retry)
