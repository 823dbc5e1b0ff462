"""json_mode auto against a real OpenAI-compatible server: llama-cpp-python's, on the bundled GGUF.

That server refuses `response_format.type = "json_schema"` with an HTTP 500 validation error;
the default json_mode must step down to the form it takes, with no failed call.
"""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from visinstruct.core.cli import main
from visinstruct.core.export.validate import validate_llava_file

pytest.importorskip("llama_cpp.server", reason="the llama-cpp-python[server] extra is missing")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/v1/models")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m llama_cpp.server` on a free loopback port; its base URL."""
    from visinstruct.core.models.backends.local import bundled_model_path

    port = _free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_model_path()),
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096"],
            stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        # The server loads the model before it listens: poll until it answers (or dies).
        while not _answers(port):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_headless_run_with_the_default_json_mode_has_no_failed_call(
    llama_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "run.toml"
    config.write_text(
        'db = "llama.db"\n'
        '[generation]\nmodel = "llama"\nmax_tokens = 160\n'
        '[judge]\nmodel = "llama"\nmax_tokens = 80\n'
        f'[models.llama]\nbackend = "openai"\nbase_url = "{llama_server}"\n'
        'model = "gemma-3-270m"\nmax_in_flight = 2\nread_timeout = 300\n',
        encoding="utf-8")
    code = main(["run", "--headless", "--json", "--config", str(config), "--limit", "1"])
    out = capsys.readouterr().out
    assert code in (0, 1), out[-2000:]  # 1: a unit may fail to parse; no call may fail
    finished = json.loads(out.strip().splitlines()[-1])
    assert finished["event"] == "RunFinished" and finished["status"] == "finished"
    assert finished["failed_calls"] == 0 and finished["calls"] >= 3
    db = tmp_path / "llama.db"
    with sqlite3.connect(db) as conn:
        calls = conn.execute("SELECT status, error FROM llm_calls").fetchall()
        generations = conn.execute("SELECT status, raw FROM generations").fetchall()
    conn.close()
    assert calls and all(status == "ok" for status, _ in calls), calls
    assert len(generations) == 3
    # The form the server took still constrains the output: the tiny model's text is JSON.
    for status, raw in generations:
        if status == "ok":
            json.loads(raw)
    out_file = tmp_path / "llava.json"
    assert main(["export", "--db", str(db), "--out", str(out_file), "--threshold", "1"]) == 0
    assert validate_llava_file(out_file).ok
