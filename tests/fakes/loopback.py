"""A threaded HTTP/1.1 server on 127.0.0.1 that performs a Script; the base of every fake."""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from tests.fakes.scripting import (
    Behaviour,
    Hang,
    Malformed,
    RecordedRequest,
    Reply,
    ResetMidBody,
    Script,
    Throttle,
)

if TYPE_CHECKING:
    from typing import Self


@dataclass(frozen=True)
class WireResponse:
    """Status, headers and a body: bytes (sent with Content-Length) or frames (sent chunked)."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | tuple[bytes, ...] = b""


def json_response(status: int, document: Any, *headers: tuple[str, str]) -> WireResponse:
    """A JSON reply."""
    return WireResponse(
        status, (("Content-Type", "application/json"), *headers), json.dumps(document).encode()
    )


class _Handler(BaseHTTPRequestHandler):
    """Reads one request at a time on a keep-alive connection and hands it to the fake."""

    protocol_version = "HTTP/1.1"
    # Buffered writes send headers and body in one segment; small separate writes meet the
    # client's delayed ACK and add 40 ms per reply.
    wbufsize = 64 * 1024
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests and benchmarks read stdout."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            self.server.fake.serve(self, self.command, self.path, body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (read timeout): nothing left to send to.
            self.close_connection = True

    def send_wire(self, wire: WireResponse, *, cut_half: bool = False) -> None:
        """Write a response; with cut_half, write half the body then close the socket."""
        self.send_response(wire.status)
        for name, value in wire.headers:
            self.send_header(name, value)
        if isinstance(wire.body, bytes):
            self.send_header("Content-Length", str(len(wire.body)))
            self.end_headers()
            self.wfile.write(wire.body[: len(wire.body) // 2] if cut_half else wire.body)
        else:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            frames = wire.body[: max(1, len(wire.body) // 2)] if cut_half else wire.body
            for frame in frames:
                if not frame:
                    continue  # an empty chunk would end the body early
                self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
                self.wfile.flush()
            if not cut_half:
                self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        if cut_half:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    """A thread per connection; remembers open sockets so stop() can close them."""

    daemon_threads = True
    allow_reuse_address = True
    fake: FakeServer

    def __init__(self, address: tuple[str, int], fake: FakeServer) -> None:
        self.fake = fake
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that drop their connection; report anything else."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def track(self, connection: socket.socket) -> None:
        with self._open_lock:
            self._open.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(connection)

    def close_open_connections(self) -> None:
        """Shut keep-alive sockets so their handler threads end."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class FakeServer:
    """A loopback server performing `script`; use as a context manager, `url` is its base URL.

    Subclasses map paths to (endpoint, operation) in route() and behaviours to wire replies in
    render(); hangs, latency, capacity, resets and request recording are handled here.
    """

    def __init__(self, script: Script | None = None, *, port: int = 0) -> None:
        self.script = script if script is not None else Script()
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- what subclasses provide -------------------------------------------------------
    def route(self, method: str, path: str) -> tuple[str, str] | None:
        """(endpoint, operation) for a request path, or None for an unknown path."""
        raise NotImplementedError

    def render(self, behaviour: Behaviour, request: RecordedRequest) -> WireResponse:
        """The wire response for a behaviour (Reply, Throttle, Fail, Malformed, StreamError)."""
        raise NotImplementedError

    def precheck(self, request: RecordedRequest) -> WireResponse | None:
        """A response that pre-empts the script (unknown endpoint, bad key), or None."""
        return None

    def endpoint_of(self, routed: str, document: Any) -> str:
        """The script key of a request: the routed endpoint unless the body names another."""
        return routed

    def not_found(self, method: str, path: str) -> WireResponse:
        """The reply to an unknown path."""
        return json_response(404, {"message": f"no route for {method} {path}"})

    # --- lifecycle -----------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (after start)."""
        if self._server is None:
            raise RuntimeError("the fake server is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:54321."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Bind and serve in a background thread."""
        self.script.stopping.clear()
        self._server = _Server(("127.0.0.1", self._requested_port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
            name=f"{type(self).__name__}:{self.port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut waits short and close every socket."""
        self.script.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.close_open_connections()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def drop_idle_connections(self) -> None:
        """Close the server side of every open connection, as servers do to idle keep-alives."""
        if self._server is not None:
            self._server.close_open_connections()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- serving -------------------------------------------------------------------------
    def serve(self, handler: _Handler, method: str, path: str, body: bytes) -> None:
        """Record the request, pick its behaviour and perform it."""
        route = self.route(method, path)
        if route is None:
            handler.send_wire(self.not_found(method, path))
            return
        endpoint, operation = route
        try:
            document = json.loads(body) if body else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            document = None
        endpoint = self.endpoint_of(endpoint, document)
        received = RecordedRequest(
            endpoint, operation, method, path, dict(handler.headers.items()), body, document
        )
        pre_empted = self.precheck(received)
        if pre_empted is not None:
            self.script.record(received)
            handler.send_wire(pre_empted)
            return
        request, behaviour = self.script.take(received)
        self.script.enter(endpoint)
        try:
            self._perform(handler, request, behaviour)
        finally:
            self.script.leave(endpoint)

    def _perform(self, handler: _Handler, request: RecordedRequest, behaviour: Behaviour) -> None:
        stopping = self.script.stopping
        if isinstance(behaviour, Hang):
            stopping.wait(behaviour.seconds)
            handler.close_connection = True
            return
        latency = getattr(behaviour, "latency_s", 0.0)
        slot: int | None = None
        gate = self.script.gate
        if gate is not None and isinstance(behaviour, Reply):
            admitted = gate.enter(request.endpoint)
            if admitted is None:
                behaviour = Throttle()
            else:
                slot, latency = admitted[0], latency + admitted[1]
        try:
            if latency > 0:
                stopping.wait(latency)
            if isinstance(behaviour, ResetMidBody):
                handler.send_wire(self.render(Reply(behaviour.text), request), cut_half=True)
            else:
                handler.send_wire(self.render(behaviour, request))
        finally:
            if gate is not None and slot is not None:
                gate.leave(request.endpoint, slot)

    def malformed(self, behaviour: Malformed) -> WireResponse:
        """A 200 JSON-typed reply whose body does not parse."""
        return WireResponse(200, (("Content-Type", "application/json"),), behaviour.body)


def frames_of(data: bytes, size: int) -> tuple[bytes, ...]:
    """Cut bytes into pieces of `size` (the last may be shorter)."""
    return tuple(data[i:i + size] for i in range(0, len(data), size)) or (b"",)


def run_cli(make: type[FakeServer], argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT: `--port 0 --print-port [--script file.json]`."""
    parser = argparse.ArgumentParser(description=f"Run the {make.__name__} loopback fake.")
    parser.add_argument("--port", type=int, default=0, help="port to bind on 127.0.0.1 (0: any)")
    parser.add_argument("--print-port", action="store_true", help="print the bound port on stdout")
    parser.add_argument("--script", help="JSON file of scripted behaviours (Script.from_dict)")
    arguments = parser.parse_args(argv)
    script = Script.from_file(arguments.script) if arguments.script else Script()
    finished = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: finished.set())
    with make(script, port=arguments.port) as fake:
        if arguments.print_port:
            print(fake.port, flush=True)
        else:
            print(f"{make.__name__} serving on {fake.url}", file=sys.stderr, flush=True)
        finished.wait()
    return 0

