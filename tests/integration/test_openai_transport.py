"""Every request that reached a server is an attempt in the ledger: the OpenAI wire never
re-sends on its own when a kept-alive connection drops after the server read the request."""

from __future__ import annotations

import json
import os
import socket
import socketserver
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.fakes.model_replies import prompt_text, reply_for
from tests.fakes.openai_server import chat_completion
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
