"""The OpenAI wire's transport against raw servers: every request that reached a server is an
attempt in the ledger (no re-send on its own when a kept-alive connection drops after the
server read the request), and a reply that trickles in is cut at the whole-call deadline."""

from __future__ import annotations

import json
import os
import socket
import socketserver
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.model_replies import prompt_text, reply_for
from tests.fakes.openai_server import OpenAIServer, chat_completion
from tests.fakes.scripting import Script, Throttle
from visinstruct.core.config import load_config
from visinstruct.core.errors import BackendError, ConfigError
from visinstruct.core.models import pool as pool_module
from visinstruct.core.models.backends.base import CompletionRequest, Message
from visinstruct.core.models.backends.openai import OpenAIBackend
from visinstruct.dataset import sample

REPO = Path(__file__).resolve().parents[2]


def read_request(sock: socket.socket) -> bytes | None:
    """One HTTP request's body read whole from `sock`, or None when the client hung up."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        body += chunk
    return body


class ReadThenDrop(socketserver.ThreadingTCPServer):
    """Answers the first request of each connection and keeps it alive; reads the second whole,
    then closes the connection without answering (a worker that crashed mid-request)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received = 0
        self.lock = threading.Lock()


class _Handler(socketserver.BaseRequestHandler):
    server: ReadThenDrop

    def handle(self) -> None:
        for number in (1, 2):
            body = read_request(self.request)
            if body is None:
                return
            with self.server.lock:
                self.server.received += 1
            if number == 2:
                return  # read, never answered: the connection closes
            document = json.loads(body)
            text = reply_for(prompt_text(document))
            reply = json.dumps(chat_completion(text, finish_reason="stop", prompt_tokens=10,
                                               completion_tokens=10, model="m")).encode()
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Connection: keep-alive\r\n"
                                 + f"Content-Length: {len(reply)}\r\n\r\n".encode() + reply)


@pytest.mark.timeout(300)
def test_a_server_that_drops_each_reused_connection_gets_one_ledger_row_per_request(
        tmp_path: Path) -> None:
    server = ReadThenDrop()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    try:
        db = tmp_path / "run.db"
        config = tmp_path / "run.toml"
        config.write_text(f"""db = "{db}"
[source]
coco_captions = "{sample.captions_path()}"
limit = 4
[generation]
model = "served"
[judge]
model = "served"
threshold = 1
[models.served]
backend = "openai"
base_url = "http://127.0.0.1:{server.server_address[1]}/v1"
model = "m"
max_in_flight = 2
attempts = 4
probe_seconds = 0.05
""")
        result = subprocess.run(
            [sys.executable, "-m", "visinstruct.core.cli", "run", "--headless", "--json",
             "--config", str(config)],
            capture_output=True, text=True, timeout=240, cwd=tmp_path,
            env={**os.environ, "NO_COLOR": "1"}, check=False)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode in (0, 1), result.stderr[-3000:]
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT count(*) FROM llm_calls").fetchone()[0]
        failed = conn.execute("SELECT count(*) FROM llm_calls WHERE status = 'error'"
                              ).fetchone()[0]
        answered = conn.execute("SELECT count(*) FROM llm_calls WHERE status = 'ok'"
                                ).fetchone()[0]
    assert server.received == rows
    assert failed and answered, "the server never dropped a reused connection: proves nothing"


class Trickle(socketserver.ThreadingTCPServer):
    """Reads a request, promises a 10,000-byte body and sends one byte of it every 50 ms."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TrickleHandler)
        self.stop = threading.Event()


class _TrickleHandler(socketserver.BaseRequestHandler):
    server: Trickle

    def handle(self) -> None:
        if read_request(self.request) is None:
            return
        try:
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 10000\r\n\r\n")
            while not self.server.stop.wait(0.05):
                self.request.sendall(b" ")
        except OSError:
            return  # the client cut the call


def test_a_trickling_reply_is_cut_at_the_whole_call_deadline() -> None:
    server = Trickle()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    backend = OpenAIBackend(f"http://127.0.0.1:{server.server_address[1]}/v1", model="m",
                            read_timeout=1.0, call_timeout=1.5)
    try:
        started = time.monotonic()
        with pytest.raises(BackendError) as caught:
            backend.complete(CompletionRequest((Message("user", "hi"),), max_tokens=5))
        took = time.monotonic() - started
    finally:
        backend.close()
        server.stop.set()
        server.shutdown()
        server.server_close()
    error = caught.value
    assert (error.error_class, error.kind) == ("CallTimeout", BackendError.TRANSIENT)
    assert "call_timeout = 1.5 s" in str(error) and "\n" not in str(error)
    assert took < 30  # a bound, not a timing target: without the deadline it never ends


def test_call_timeout_is_range_checked(tmp_path: Path) -> None:
    for value in ("0", "-1", "1e10"):
        config = tmp_path / "run.toml"
        config.write_text(f"""[generation]\nmodel = "served"\n[judge]\nmodel = "served"
[models.served]\nbackend = "openai"\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"
call_timeout = {value}\n""")
        with pytest.raises(ConfigError, match="call_timeout"):
            load_config(config)


@pytest.mark.timeout(120)
def test_a_server_that_always_pushes_back_fails_its_units_in_bounded_time(
        tmp_path: Path, run_cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_module, "PUSH_BACK_SECONDS", 0.5)
    script = Script()
    script.on("*", lambda request: Throttle())
    with OpenAIServer(script, models=("m",)) as server:
        config = tmp_path / "run.toml"
        config.write_text(f"""db = "{tmp_path / 'run.db'}"
[source]
coco_captions = "{sample.captions_path()}"
limit = 2
[generation]
model = "served"
[judge]
model = "served"
[models.served]
backend = "openai"
base_url = "{server.url}/v1"
model = "m"
""")
        code, out, err = run_cli("run", "--headless", "--json", "--config", config)
    assert code == 1, err
    assert "gave up after" in out and "push-backs" in out
    finished = json.loads(out.splitlines()[-1])
    assert finished["failed_units"] == finished["total_units"] > 0
    assert finished["calls"] == finished["failed_calls"]
