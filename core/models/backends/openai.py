"""OpenAI-compatible chat servers (vLLM, TGI, llama.cpp server, Ollama) over stdlib HTTP."""

from __future__ import annotations

import base64
import http.client
import json
import os
import select
import socket
import threading
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

from visinstruct.core.config import OPENAI_JSON_MODES as JSON_MODES
from visinstruct.core.config import ModelConfig
from visinstruct.core.errors import BackendError, ConfigError
from visinstruct.core.models.backends.base import CompletionRequest, CompletionResponse, Message
from visinstruct.core.models.backends.deadline import call_deadline, cut_socket
from visinstruct.core.models.backends.json_modes import (
    ModeLadder,
    concrete,
    json_fields,
    names_json_field,
    rejects_request,
    validation_detail,
)
from visinstruct.core.models.backends.mixtral import fold_system
from visinstruct.core.models.backends.replies import (
    chat_content,
    invalid,
    naming_target,
    parse_chat_completion,
    read_json,
)
from visinstruct.core.sanitize.redact import redact_url, register_secret, register_url

_ERROR_TEXT_LIMIT = 300


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether an idle kept-alive socket can no longer carry a request: between exchanges
    nothing may arrive, so anything readable is the server's close (or a reset, or junk)."""
    try:
        if hasattr(select, "poll"):  # select() refuses descriptors above 1023
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def chat_body(
    model: str, request: CompletionRequest, *, json_mode: str, fold_system_role: bool
) -> dict[str, Any]:
    """The `/chat/completions` body; images become data URLs, the schema goes per json_mode."""
    if request.max_tokens < 1:
        raise invalid(f"max_tokens must be at least 1, got {request.max_tokens}")
    messages: Sequence[Message] = request.messages
    if fold_system_role:
        try:
            messages = fold_system(messages)
        except ValueError as error:
            raise invalid(f"cannot build the chat messages: {error}") from error
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m.role, "content": chat_content(m)} for m in messages],
        "max_tokens": request.max_tokens,
        "temperature": max(request.temperature, 0.0),
        "top_p": request.top_p,
    }
    if request.stop:
        body["stop"] = list(request.stop)
    if request.seed is not None:
        body["seed"] = request.seed
    if request.json_schema is not None:
        body.update(json_fields(concrete(json_mode), request.json_schema))
    return body


def status_kind(status: int) -> str:
    """How the pool should treat an HTTP error status."""
    if status in (429, 503):
        return BackendError.BACKPRESSURE
    if status >= 500 or status == 408:
        return BackendError.TRANSIENT
    return BackendError.PERMANENT


def status_class(status: int) -> str:
    """A CamelCase name for an HTTP status, e.g. 429 -> TooManyRequests."""
    try:
        return HTTPStatus(status).phrase.title().replace(" ", "").replace("-", "")
    except ValueError:
        return f"HTTP{status}"


def _basic_auth(url: str) -> str:
    """The Authorization header value for the user info of `url`."""
    parts = urlsplit(url)
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


class OpenAIBackend:
    """OpenAI-compatible base URLs serving `model`; one keep-alive connection per thread and URL."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        model: str,
        api_key: str | None = None,
        base_urls: Sequence[str] | None = None,
        max_in_flight: int = 16,
        read_timeout: float = 120.0,
        connect_timeout: float = 5.0,
        call_timeout: float = 600.0,
        json_mode: str = "auto",
        fold_system_role: bool = False,
    ) -> None:
        urls = list(base_urls or ())
        if not urls:
            url = base_url or os.environ.get("OPENAI_BASE_URL", "")
            if not url:
                raise ConfigError(
                    "the OpenAI backend needs a base URL: set `base_url` (like "
                    "http://127.0.0.1:8000/v1) or OPENAI_BASE_URL"
                )
            urls = [url]
        if json_mode not in JSON_MODES:
            raise ConfigError(
                f"unknown json_mode {json_mode!r}; use one of {', '.join(JSON_MODES)}"
            )
        for url in urls:
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
                raise ConfigError(f"bad OpenAI base URL {redact_url(url)!r}; write it like "
                                  "http://host:8000/v1")
        self.name = f"openai:{model}"
        for url in urls:
            register_url(url)
        # Endpoints are named without user info (names reach the ledger, events and screens);
        # a user:password in a base URL is sent as Basic authentication instead.
        self.endpoints: tuple[str, ...] = tuple(redact_url(u).rstrip("/") for u in urls)
        self._basic_auth = {redact_url(u).rstrip("/"): _basic_auth(u) for u in urls
                            if urlsplit(u).username is not None}
        self.model = model
        self.max_in_flight = max_in_flight
        self.read_timeout = read_timeout
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self.json_mode = json_mode
        self._json_forms = ModeLadder(json_mode)
        self.fold_system_role = fold_system_role
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY") or None
        register_secret(self._api_key)
        self._local = threading.local()
        self._all_connections: list[http.client.HTTPConnection] = []
        self._connections_lock = threading.Lock()

    def complete(
        self, request: CompletionRequest, endpoint: str | None = None
    ) -> CompletionResponse:
        """POST one chat completion to `endpoint` (default: the first base URL)."""
        base = (endpoint or self.endpoints[0]).rstrip("/")
        while True:
            form = self._json_forms.current(base)
            body = json.dumps(
                chat_body(self.model, request, json_mode=form,
                          fold_system_role=self.fold_system_role)
            ).encode("utf-8")
            status, raw = self._post(base, "/chat/completions", body)
            if status == 200:
                break
            error = self._status_error(base, status, raw)
            # A server that refuses this way of asking for JSON gets the next one down; a
            # refused request is never processed, so asking again costs nothing.
            refused_form = (request.json_schema is not None
                            and error.kind == BackendError.PERMANENT
                            and names_json_field(error.message))
            if not (refused_form and self._json_forms.step_down(base, form)):
                if refused_form and not self._json_forms.auto:
                    error.message += '; json_mode = "auto" finds the form this server takes'
                    error.args = (error.message,)
                raise error
        try:
            reply = parse_chat_completion(read_json(raw))
        except BackendError as error:
            raise naming_target(error, f"OpenAI-compatible server {base}") from error
        return reply.response(base, raw.decode("utf-8", errors="replace"),
                              {"json_mode": form} if request.json_schema is not None else None)

    def _headers(self, length: int) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Content-Length": str(length),
        }
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _post(self, base: str, path: str, body: bytes) -> tuple[int, bytes]:
        parts = urlsplit(base)
        target = f"{parts.path.rstrip('/')}{path}"
        headers = self._headers(len(body))
        if base in self._basic_auth and "Authorization" not in headers:
            headers["Authorization"] = self._basic_auth[base]
        connection = self._connection(base)
        sock = connection.sock
        with call_deadline(self.call_timeout, lambda: cut_socket(sock)) as deadline:
            try:
                # Sent once: a connection that fails after the request went out may have been
                # read by the server, so the failure is this attempt's and any retry is a new
                # attempt in the ledger. Sockets the server closed while idle are left before.
                connection.request("POST", target, body=body, headers=headers)
                response = connection.getresponse()
                raw = response.read()
            except Exception as error:
                self._drop(base, connection)
                if deadline.expired:
                    raise deadline.error(f"OpenAI-compatible server {base}") from error
                raise self._transport_error(base, error) from error
            if deadline.expired:  # cut while reading a body that ends at the close
                self._drop(base, connection)
                raise deadline.error(f"OpenAI-compatible server {base}")
        if response.will_close:
            self._drop(base, connection)
        return response.status, raw

    def _thread_pool(self) -> dict[str, http.client.HTTPConnection]:
        """This thread's connections by base URL."""
        pool: dict[str, http.client.HTTPConnection] | None = getattr(self._local, "pool", None)
        if pool is None:
            pool = {}
            self._local.pool = pool
        return pool

    def _connection(self, base: str) -> http.client.HTTPConnection:
        """This thread's connection to `base`: its kept-alive one while the server keeps it
        open, else a new one."""
        pool = self._thread_pool()
        existing = pool.get(base)
        if existing is not None:
            if existing.sock is not None and not _closed_by_server(existing.sock):
                return existing
            self._drop(base, existing)
        parts = urlsplit(base)
        connection_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_class(
            parts.hostname or "", parts.port, timeout=self.connect_timeout
        )
        try:
            connection.connect()
        except Exception as error:
            connection.close()
            raise self._transport_error(base, error, connecting=True) from error
        if connection.sock is not None:
            connection.sock.settimeout(self.read_timeout)
        pool[base] = connection
        with self._connections_lock:
            self._all_connections.append(connection)
        return connection

    def _drop(self, base: str, connection: http.client.HTTPConnection) -> None:
        connection.close()
        pool = self._thread_pool()
        if pool.get(base) is connection:
            del pool[base]
        with self._connections_lock:
            if connection in self._all_connections:
                self._all_connections.remove(connection)

    def _transport_error(
        self, base: str, error: Exception, *, connecting: bool = False
    ) -> BackendError:
        if isinstance(error, BackendError):
            return error
        if isinstance(error, (socket.timeout, TimeoutError)):
            error_class = "ConnectTimeout" if connecting else "ReadTimeout"
        elif isinstance(error, ConnectionRefusedError) or connecting:
            error_class = "ConnectError"
        elif isinstance(error, (ConnectionError, http.client.IncompleteRead)):
            error_class = "ConnectionReset"
        elif isinstance(error, (http.client.HTTPException, OSError)):
            error_class = type(error).__name__
        else:
            raise error
        return BackendError(
            f"OpenAI-compatible server {base}: {error_class}: "
            f"{self._scrub(str(error) or repr(error))}",
            kind=BackendError.TRANSIENT,
            error_class=error_class,
        )

    def _status_error(self, base: str, status: int, raw: bytes) -> BackendError:
        detail = raw.decode("utf-8", errors="replace")
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            document = None
        fields = validation_detail(document)
        if fields is not None:
            detail = fields
        elif isinstance(document, dict):
            inner = document.get("error")
            if isinstance(inner, dict):
                detail = str(inner.get("message") or detail)
            elif isinstance(inner, str):
                detail = inner
            elif document.get("message") or document.get("detail"):
                detail = str(document.get("message") or document.get("detail"))
        detail = self._scrub(detail.strip())[:_ERROR_TEXT_LIMIT] or "no message"
        kind, error_class = status_kind(status), status_class(status)
        # A refusal of the request's own fields is permanent whatever the status says:
        # some servers answer a validation error with 500, and resending it never helps.
        if status not in (408, 429) and (fields is not None or rejects_request(detail)):
            kind, error_class = BackendError.PERMANENT, "InvalidRequest"
        return BackendError(
            f"OpenAI-compatible server {base}: HTTP {status}: {detail}",
            kind=kind,
            error_class=error_class,
            status=status,
        )

    def _scrub(self, text: str) -> str:
        """Remove the API key from server text; some servers echo the key they rejected."""
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text

    def close(self) -> None:
        """Close every connection this backend opened, in any thread."""
        with self._connections_lock:
            connections, self._all_connections = self._all_connections, []
        for connection in connections:
            connection.close()


def from_config(model: ModelConfig) -> OpenAIBackend:
    """The OpenAI-compatible backend a [models.X] table describes (the registry's builder)."""
    base_urls = model.base_urls or ((model.base_url,) if model.base_url else ())
    return OpenAIBackend(base_urls[0] if base_urls else None, base_urls=base_urls,
                         model=model.model, api_key=os.environ.get(model.api_key_env),
                         max_in_flight=model.max_in_flight, read_timeout=model.read_timeout,
                         call_timeout=model.call_timeout, json_mode=model.json_mode)
