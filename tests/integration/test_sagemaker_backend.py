"""The SageMaker backend through the real boto3 client against the loopback SageMaker runtime."""

from __future__ import annotations

import json
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import sagemaker_server
from tests.fakes.aws import aws_env, aws_env_vars
from tests.fakes.sagemaker_server import SageMakerServer, payload_part
from tests.fakes.scripting import (
    Capacity,
    Dead,
    Fail,
    Hang,
    Malformed,
    Reply,
    ResetMidBody,
    Script,
    StreamError,
    Throttle,
)
from visinstruct.core.errors import BackendError
from visinstruct.core.models.backends.base import CompletionRequest, Message
from visinstruct.core.models.backends.mixtral import fold_system, mixtral_prompt
from visinstruct.core.models.backends.sagemaker import SageMakerBackend
from visinstruct.core.models.backends.sagemaker_payloads import parse_body

ENDPOINTS = ("mixtral-a", "mixtral-b")
CONVERSATION = (
    Message("system", "You describe pictures."),
    Message("user", "What is in the image?"),
    Message("assistant", "A cat on a sofa."),
    Message("user", "What colour is the cat?"),
)
TEMPLATED = (
    "<s>[INST] You describe pictures.\n\nWhat is in the image? [/INST] A cat on a sofa.</s>"
    "[INST] What colour is the cat? [/INST]"
)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[SageMakerServer]:
    with SageMakerServer(Script(), endpoints=ENDPOINTS) as server:
        aws_env(monkeypatch, sagemaker_url=server.url)
        yield server


@pytest.fixture
def make_backend(fake: SageMakerServer) -> Iterator[Any]:
    made: list[SageMakerBackend] = []

    def make(**options: Any) -> SageMakerBackend:
        backend = SageMakerBackend(ENDPOINTS, **{"read_timeout": 5.0, **options})
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def failure_of(backend: SageMakerBackend, request: CompletionRequest, **kw: Any) -> BackendError:
    with pytest.raises(BackendError) as caught:
        backend.complete(request, **kw)
    return caught.value


def test_mixtral_template_folds_system_into_first_user_turn() -> None:
    assert mixtral_prompt(CONVERSATION) == TEMPLATED
    assert fold_system([Message("system", "Only rules.")]) == (Message("user", "Only rules."),)
    merged = fold_system([Message("user", "a"), Message("user", "b")])
    assert merged == (Message("user", "a\n\nb"),)


def test_tgi_round_trip_sends_templated_prompt_and_validated_parameters(
    fake: SageMakerServer, make_backend: Any
) -> None:
    fake.script.push("mixtral-b", Reply(" The cat is orange.", tokens_in=37, tokens_out=6))
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}}
    request = CompletionRequest(
        CONVERSATION, max_tokens=200, temperature=0.5, top_p=0.9, stop=("</s>", "[INST]"),
        json_schema=schema, seed=7,
    )

    response = make_backend(schema="tgi").complete(request, endpoint="mixtral-b")

    assert fake.script.bodies("mixtral-b") == [{
        "inputs": TEMPLATED,
        "parameters": {
            "max_new_tokens": 200, "do_sample": True, "temperature": 0.5, "top_p": 0.9,
            "stop": ["</s>", "[INST]"], "return_full_text": False, "details": True, "seed": 7,
            "grammar": {"type": "json", "value": schema},
        },
    }]
    assert (response.text, response.finish_reason) == ("The cat is orange.", "stop")
    assert (response.tokens_in, response.tokens_out) == (37, 6)
    assert response.endpoint == "mixtral-b"
    assert response.extra == {"variant": "AllTraffic"}
    assert fake.script.count("mixtral-a") == 0


def test_tgi_greedy_request_drops_temperature_and_top_p(
    fake: SageMakerServer, make_backend: Any
) -> None:
    backend = make_backend()
    backend.complete(CompletionRequest(CONVERSATION, temperature=0.0, top_p=0.5))
    backend.complete(CompletionRequest(CONVERSATION, temperature=0.3, top_p=1.0))

    greedy, full_top_p = (body["parameters"] for body in fake.script.bodies())
    assert greedy["do_sample"] is False
    assert "temperature" not in greedy and "top_p" not in greedy
    assert full_top_p["temperature"] == 0.3 and "top_p" not in full_top_p


@pytest.mark.parametrize(
    "request_",
    [
        CompletionRequest(CONVERSATION, stop=("a", "b", "c", "d", "e")),
        CompletionRequest(CONVERSATION, max_tokens=0),
        CompletionRequest((Message("assistant", "I speak first"),)),
    ],
    ids=["five-stop-sequences", "zero-max-tokens", "no-user-turn"],
)
def test_invalid_parameters_are_refused_before_sending(
    fake: SageMakerServer, make_backend: Any, request_: CompletionRequest
) -> None:
    error = failure_of(make_backend(), request_)

    assert (error.kind, error.error_class) == (BackendError.PERMANENT, "InvalidParameters")
    assert fake.script.count() == 0


def test_lmi_round_trip_uses_stop_sequences_and_reads_a_dict(
    fake: SageMakerServer, make_backend: Any
) -> None:
    fake.script.push("mixtral-a", Reply("An orange cat."))
    request = CompletionRequest(CONVERSATION, max_tokens=64, temperature=0.2, top_p=0.8,
                                stop=("###",))

    response = make_backend(schema="lmi").complete(request)

    assert fake.script.bodies() == [{
        "inputs": TEMPLATED,
        "parameters": {"max_new_tokens": 64, "do_sample": True, "temperature": 0.2, "top_p": 0.8,
                       "stop_sequences": ["###"]},
    }]
    assert response.text == "An orange cat."
    assert parse_body("lmi", b'[{"generated_text": " listed "}]').text == "listed"


def test_messages_round_trip_folds_system_and_reads_usage(
    fake: SageMakerServer, make_backend: Any
) -> None:
    fake.script.push(
        "mixtral-a", Reply("Orange.", tokens_in=50, tokens_out=2, finish_reason="length")
    )
    request = CompletionRequest(CONVERSATION, max_tokens=32, temperature=0.6, top_p=0.95,
                                stop=("\n\n",))

    response = make_backend(schema="messages").complete(request)

    assert fake.script.bodies() == [{
        "messages": [
            {"role": "user", "content": "You describe pictures.\n\nWhat is in the image?"},
            {"role": "assistant", "content": "A cat on a sofa."},
            {"role": "user", "content": "What colour is the cat?"},
        ],
        "max_tokens": 32, "temperature": 0.6, "top_p": 0.95, "stop": ["\n\n"],
    }]
    assert (response.text, response.finish_reason) == ("Orange.", "length")
    assert (response.tokens_in, response.tokens_out) == (50, 2)


@pytest.mark.parametrize(
    ("behaviour", "kind", "error_class", "status"),
    [
        (Throttle(), BackendError.BACKPRESSURE, "ThrottlingException", 400),
        (Fail("ModelError", original_status=429), BackendError.BACKPRESSURE, "ModelError", 424),
        (Fail("ModelNotReadyException"), BackendError.BACKPRESSURE, "ModelNotReadyException", 429),
        (Fail("ServiceUnavailable"), BackendError.BACKPRESSURE, "ServiceUnavailable", 503),
        (Fail("ModelError", original_status=503), BackendError.TRANSIENT, "ModelError", 424),
        (Fail("InternalFailure"), BackendError.TRANSIENT, "InternalFailure", 500),
        (Fail("BadGateway", status=502), BackendError.TRANSIENT, "BadGateway", 502),
        (Fail("GatewayTimeout", status=504), BackendError.TRANSIENT, "GatewayTimeout", 504),
        (ResetMidBody(), BackendError.TRANSIENT, "ConnectionReset", None),
        (Malformed(), BackendError.TRANSIENT, "MalformedResponse", None),
        (Fail("ValidationError"), BackendError.PERMANENT, "ValidationError", 400),
        (Fail("ModelError", original_status=400), BackendError.PERMANENT, "ModelError", 424),
        (Fail("AccessDeniedException"), BackendError.PERMANENT, "AccessDeniedException", 403),
    ],
    ids=lambda value: getattr(value, "error_class", type(value).__name__)
    if not isinstance(value, (str, int, type(None))) else str(value),
)
def test_each_failure_is_classified_and_sent_once(
    fake: SageMakerServer, make_backend: Any, behaviour: Any, kind: str, error_class: str,
    status: int | None,
) -> None:
    fake.script.push("mixtral-a", behaviour)

    error = failure_of(make_backend(), CompletionRequest(CONVERSATION))

    assert (error.kind, error.error_class, error.status) == (kind, error_class, status)
    assert "mixtral-a" in str(error)
    assert fake.script.count() == 1  # botocore did not retry


def test_throttling_with_a_null_message_still_reads_well(
    fake: SageMakerServer, make_backend: Any
) -> None:
    fake.script.push("mixtral-a", Throttle())

    error = failure_of(make_backend(), CompletionRequest(CONVERSATION))

    assert json.loads(fake.script.requests()[0].body)["inputs"] == TEMPLATED
    assert "ThrottlingException" in str(error) and "None" not in str(error)
    assert "testing" not in str(error)  # the dummy credentials never show


def test_unknown_endpoint_is_permanent(fake: SageMakerServer, make_backend: Any) -> None:
    error = failure_of(make_backend(), CompletionRequest(CONVERSATION), endpoint="mixtral-z")

    assert (error.kind, error.error_class) == (BackendError.PERMANENT, "ValidationError")
    assert "Endpoint mixtral-z of account" in str(error) and "not found" in str(error)


def test_reply_slower_than_read_timeout_is_transient_and_not_retried(
    fake: SageMakerServer, make_backend: Any
) -> None:
    fake.script.push("mixtral-a", Hang(seconds=20))
    started = time.monotonic()

    error = failure_of(make_backend(read_timeout=0.5), CompletionRequest(CONVERSATION))

    assert (error.kind, error.error_class) == (BackendError.TRANSIENT, "ReadTimeout")
    assert time.monotonic() - started < 5
    assert fake.script.count() == 1


def test_dead_endpoint_recovers_after_its_failures(
    fake: SageMakerServer, make_backend: Any
) -> None:
    fake.script.push("mixtral-a", Dead(2, Fail("ServiceUnavailable")))
    backend = make_backend()

    kinds = [failure_of(backend, CompletionRequest(CONVERSATION)).kind for _ in range(2)]

    assert kinds == [BackendError.BACKPRESSURE] * 2
    assert backend.complete(CompletionRequest(CONVERSATION)).text == "ok"


def test_connection_refused_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    aws_env(monkeypatch, sagemaker_url=f"http://127.0.0.1:{closed_port}")
    backend = SageMakerBackend(ENDPOINTS, read_timeout=1.0, connect_timeout=1.0)

    error = failure_of(backend, CompletionRequest(CONVERSATION))
    backend.close()

    assert (error.kind, error.error_class) == (BackendError.TRANSIENT, "ConnectError")


def test_client_has_no_retries_and_a_pool_for_every_request_in_flight(make_backend: Any) -> None:
    config = make_backend(max_in_flight=64)._client.meta.config

    assert config.retries["total_max_attempts"] == 1
    assert config.max_pool_connections >= 64 * len(ENDPOINTS)
    assert config.connect_timeout == 5.0


def test_stream_reassembles_json_lines_split_across_frames(
    fake: SageMakerServer, make_backend: Any
) -> None:
    text = "A ginger cat sleeps on a grey sofa next to a window."
    fake.script.push("mixtral-a", Reply(text, stream_chunk_bytes=7))

    response = make_backend(stream=True).complete(CompletionRequest(CONVERSATION))

    assert fake.script.requests()[0].operation == "invocations-response-stream"
    assert fake.script.bodies()[0]["stream"] is True
    assert response.text == text
    assert (response.finish_reason, response.tokens_out) == ("stop", len(text.split()))


@pytest.mark.parametrize("schema", ["lmi", "messages"])
def test_stream_reads_lmi_lines_and_chat_chunks(
    fake: SageMakerServer, make_backend: Any, schema: str
) -> None:
    fake.script.push("mixtral-a", Reply("Two words", stream_chunk_bytes=5))

    assert make_backend(schema=schema, stream=True).complete(
        CompletionRequest(CONVERSATION)).text == "Two words"


def test_model_stream_error_mid_stream_is_transient(
    fake: SageMakerServer, make_backend: Any
) -> None:
    fake.script.push("mixtral-a", StreamError(parts_before=2))

    error = failure_of(make_backend(stream=True), CompletionRequest(CONVERSATION))

    assert (error.kind, error.error_class) == (BackendError.TRANSIENT, "ModelStreamError")
    assert fake.script.count() == 1


def test_stream_throttled_before_it_starts(fake: SageMakerServer, make_backend: Any) -> None:
    fake.script.push("mixtral-a", Throttle())

    error = failure_of(make_backend(stream=True), CompletionRequest(CONVERSATION))

    assert (error.kind, error.error_class) == (BackendError.BACKPRESSURE, "ThrottlingException")


def test_capacity_model_serves_slots_queues_then_throttles(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(capacity=Capacity(instances=1, per_instance=2, base_latency_s=0.4, queue=1))
    with SageMakerServer(script) as server:
        aws_env(monkeypatch, sagemaker_url=server.url)
        backend = SageMakerBackend(["one"], max_in_flight=8, read_timeout=5.0)

        def call(_: int) -> str:
            try:
                return backend.complete(CompletionRequest(CONVERSATION)).text
            except BackendError as error:
                return error.error_class

        with ThreadPoolExecutor(5) as pool:
            outcomes = sorted(pool.map(call, range(5)))
        backend.close()

    assert outcomes == ["ThrottlingException"] * 2 + ["ok"] * 3
    assert script.throttled("one") == 2
    assert script.peak_in_flight("one") >= 3


def test_runs_as_a_subprocess_with_a_json_script(tmp_path: Path) -> None:
    script_file = tmp_path / "script.json"
    script_file.write_text(json.dumps({
        "default": {"reply": "from the subprocess"},
        "endpoints": {"mixtral-a": [{"throttle": {}}]},
    }))
    server = subprocess.Popen(
        [sys.executable, sagemaker_server.__file__, "--port", "0", "--print-port",
         "--script", str(script_file)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        env = aws_env_vars(sagemaker_url=f"http://127.0.0.1:{port}")
        probe = (
            "from visinstruct.core.models.backends.sagemaker import SageMakerBackend\n"
            "from visinstruct.core.models.backends.base import CompletionRequest, Message\n"
            "from visinstruct.core.errors import BackendError\n"
            "b = SageMakerBackend(['mixtral-a'])\n"
            "r = CompletionRequest((Message('user', 'hi'),))\n"
            "try:\n    b.complete(r)\nexcept BackendError as e:\n    print(e.kind)\n"
            "print(b.complete(r).text)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", probe], env={**_base_env(), **env}, capture_output=True,
            text=True, timeout=60, check=True,
        )
    finally:
        server.terminate()
        server.wait(timeout=10)

    assert result.stdout.splitlines() == ["backpressure", "from the subprocess"]
    assert server.returncode == 0


def _base_env() -> dict[str, str]:
    import os

    return {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}


class _TrickleStream(socketserver.BaseRequestHandler):
    """Answers any request with an event stream of one token every 50 ms, without end."""

    stop = threading.Event()

    def handle(self) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            data += chunk
        try:
            self.request.sendall(b"HTTP/1.1 200 OK\r\n"
                                 b"Content-Type: application/vnd.amazon.eventstream\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n")
            frame = payload_part(b'data:{"token": {"text": "a"}}\n\n')
            while not self.stop.wait(0.05):
                self.request.sendall(b"%x\r\n%s\r\n" % (len(frame), frame))
        except OSError:
            return  # the client cut the call


def test_a_trickling_stream_is_cut_at_the_whole_call_deadline(
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _TrickleStream)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                     daemon=True).start()
    aws_env(monkeypatch, sagemaker_url=f"http://127.0.0.1:{server.server_address[1]}")
    backend = SageMakerBackend(ENDPOINTS, stream=True, read_timeout=1.0, call_timeout=1.5)
    try:
        error = failure_of(backend, CompletionRequest((Message("user", "hi"),), max_tokens=5))
    finally:
        backend.close()
        _TrickleStream.stop.set()
        server.shutdown()
        server.server_close()
    assert (error.error_class, error.kind) == ("CallTimeout", BackendError.TRANSIENT)
    assert "call_timeout = 1.5 s" in str(error) and ENDPOINTS[0] in str(error)
