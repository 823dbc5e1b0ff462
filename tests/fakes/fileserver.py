"""A loopback HTTP file server with switches for the failures a download must survive."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import final


@final
class FileServer:
    """Serves given bytes at given paths on 127.0.0.1, honouring `Range`, in a background thread.

    Switches: `drop_after_bytes` with `drop_first_requests` cuts the body short on the first
    K requests (the full Content-Length is announced first); `ignore_range` answers 200 with
    the whole file; `force_status` answers every request with that status.
    """

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = dict(files)
        self.drop_after_bytes: int | None = None
        self.drop_first_requests = 0
        self.ignore_range = False
        self.force_status: int | None = None
        self.request_count = 0
        self.range_headers: list[str | None] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        # A short poll makes shutdown() return quickly instead of after the default 0.5 s.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def port(self) -> int:
        """The ephemeral port the server listens on."""
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        """The full URL of `path` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> FileServer:
        """Start serving in the background thread."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, wait for the thread and release the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _record(self, path: str, range_header: str | None) -> int:
        """Count a request and return its 1-based number."""
        with self._lock:
            self.request_count += 1
            self.range_headers.append(range_header)
            self.paths.append(path)
            return self.request_count


def _parse_range_start(header: str | None) -> int | None:
    """The start of a `bytes=<start>-[<end>]` header; only open-ended ranges matter here."""
    if not header or not header.startswith("bytes="):
        return None
    start_text = header[len("bytes="):].partition("-")[0]
    return int(start_text) if start_text.isdigit() else None


def _handler_for(server: FileServer) -> type[BaseHTTPRequestHandler]:
    """A handler class bound to `server`'s files and switches."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            range_header = self.headers.get("Range")
            number = server._record(self.path, range_header)
            if server.force_status is not None:
                self._send_status(server.force_status)
                return
            body = server.files.get(self.path)
            if body is None:
                self._send_status(404)
                return
            start = None if server.ignore_range else _parse_range_start(range_header)
            if start is not None and start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if start is None:
                self.send_response(200)
                payload = body
            else:
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                payload = body[start:]
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            drop_after = server.drop_after_bytes
            if drop_after is not None and number <= server.drop_first_requests:
                self.wfile.write(payload[:drop_after])
                self.wfile.flush()
                # A half close sends what was written, then FIN: the client sees a short body.
                self.connection.shutdown(socket.SHUT_WR)
                self.close_connection = True
                return
            self.wfile.write(payload)

        def _send_status(self, status: int) -> None:
            message = f"status {status}\n".encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(message)))
            self.end_headers()
            self.wfile.write(message)

        def log_message(self, format: str, *args: object) -> None:
            """Keep test output quiet."""

    return Handler
