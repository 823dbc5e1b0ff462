"""Botocore clients for the AWS backends, and botocore failures translated into BackendError."""

from __future__ import annotations

import http.client
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from urllib3.exceptions import ProtocolError

from visinstruct.core.errors import BackendError
from visinstruct.core.models.backends.replies import naming_target
from visinstruct.core.sanitize.redact import register_secret

BACKPRESSURE_CODES = frozenset({
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "ServiceQuotaExceededException",
    "ModelNotReadyException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
})
TRANSIENT_CODES = frozenset({
    "InternalFailure",
    "InternalServerException",
    "InternalDependencyException",
    "InternalStreamFailure",
    "ModelStreamError",
    "ModelStreamErrorException",
    "ModelTimeoutException",
})
MODEL_ERROR_CODES = frozenset({"ModelError", "ModelErrorException"})
# SageMaker's ModelError message carries the container's status as "client error (429)".
_ORIGINAL_STATUS_IN_MESSAGE = re.compile(r"\b(?:client|server) error \((\d{3})\)")


def client_config(*, max_in_flight: int, read_timeout: float, connect_timeout: float) -> Config:
    """Botocore settings: no retries (the pool owns them), a pool as wide as the in-flight cap."""
    # In a Config, "max_attempts" counts retries (1 would mean two sends); "total_max_attempts"
    # counts sends, so 1 is the single attempt the pool expects.
    return Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=max(10, max_in_flight),
        read_timeout=read_timeout,
        connect_timeout=connect_timeout,
        tcp_keepalive=True,
    )


_loader_lock = threading.Lock()
_shared_loader: Any = None


def make_client(
    service: str, *, region: str, config: Config, endpoint_url: str | None = None
) -> Any:
    """A thread-safe client in a session of its own (so credentials resolve per backend).

    The sessions share one data loader: reading botocore's JSON models once, not per client.
    """
    global _shared_loader
    session = botocore.session.Session()
    with _loader_lock:
        if _shared_loader is None:
            _shared_loader = session.get_component("data_loader")
        else:
            session.register_component("data_loader", _shared_loader)
    _register_credentials(session)
    return session.create_client(
        service, region_name=region, config=config, endpoint_url=endpoint_url
    )


def _register_credentials(session: Any) -> None:
    """Mask the secret key and session token the client will sign with, wherever they came
    from (a profile, SSO, a credential process): an error or a reply may echo them."""
    try:
        credentials = session.get_credentials()  # cached: the client resolves them anyway
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
    except Exception:  # noqa: BLE001 - the client reports missing credentials on its first call
        return
    if frozen is not None:
        for value in (frozen.access_key, frozen.secret_key, frozen.token):
            # Real ones are 20 characters and more; a stand-in like "testing" is no secret,
            # and masking it would take a common word out of every reply.
            if value and len(value) >= 16:
                register_secret(value)


def original_status(error: ClientError) -> int | None:
    """The model container's own HTTP status inside a ModelError, if it can be found."""
    response: dict[str, Any] = error.response
    for key in ("OriginalStatusCode", "originalStatusCode"):
        value = response.get(key)
        if isinstance(value, int):
            return value
    found = _ORIGINAL_STATUS_IN_MESSAGE.search(str(response.get("Error", {}).get("Message") or ""))
    return int(found.group(1)) if found else None


def kind_of_client_error(code: str, status: int | None, container_status: int | None) -> str:
    """Back-pressure, transient or permanent for one AWS error code and HTTP status."""
    if code in MODEL_ERROR_CODES:
        if container_status is None:
            return BackendError.TRANSIENT
        if container_status == 429:
            return BackendError.BACKPRESSURE
        if 400 <= container_status < 500:
            return BackendError.PERMANENT
        return BackendError.TRANSIENT
    if code in BACKPRESSURE_CODES or status in (429, 503):
        return BackendError.BACKPRESSURE
    if code in TRANSIENT_CODES or (status is not None and status >= 500):
        return BackendError.TRANSIENT
    return BackendError.PERMANENT


def translate_client_error(error: ClientError, target: str) -> BackendError:
    """Turn a botocore ClientError (event-stream errors too) into a classified BackendError."""
    details = error.response.get("Error", {})
    code = str(details.get("Code") or "UnknownError")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    container_status = original_status(error) if code in MODEL_ERROR_CODES else None
    kind = kind_of_client_error(code, status, container_status)
    # Throttling arrives with a null message, so say something useful instead of "None".
    message = details.get("Message") or "no message from the service"
    where = f" (container status {container_status})" if container_status else ""
    http_status = f", HTTP {status}" if status else ""
    return BackendError(
        f"{target}: {code}{where}{http_status}: {message}",
        kind=kind,
        error_class=code,
        status=status,
    )


def translate_exception(error: Exception, target: str) -> BackendError:
    """Turn any failure of a boto3 call or body read into a classified BackendError."""
    if isinstance(error, BackendError):
        return error
    if isinstance(error, ClientError):
        return translate_client_error(error, target)
    transient_class: str | None = None
    if isinstance(error, ReadTimeoutError):
        transient_class = "ReadTimeout"
    elif isinstance(error, ConnectTimeoutError):
        transient_class = "ConnectTimeout"
    elif isinstance(error, EndpointConnectionError):
        transient_class = "ConnectError"
    elif isinstance(
        error,
        (ConnectionClosedError, ResponseStreamingError, IncompleteReadError, ProtocolError,
         http.client.IncompleteRead, ConnectionError),
    ):
        transient_class = "ConnectionReset"
    elif isinstance(error, TimeoutError):
        transient_class = "ReadTimeout"
    if transient_class is not None:
        return BackendError(
            f"{target}: {transient_class}: {error}", kind=BackendError.TRANSIENT,
            error_class=transient_class,
        )
    if isinstance(error, ParamValidationError):
        return BackendError(
            f"{target}: the request failed boto3's parameter validation: {error}",
            kind=BackendError.PERMANENT, error_class="InvalidParameters",
        )
    if isinstance(error, NoCredentialsError):
        return BackendError(
            f"{target}: no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY", kind=BackendError.PERMANENT, error_class="NoCredentials",
        )
    if isinstance(error, BotoCoreError):
        return BackendError(
            f"{target}: {type(error).__name__}: {error}", kind=BackendError.TRANSIENT,
            error_class=type(error).__name__,
        )
    raise error


@contextmanager
def translated_errors(target: str) -> Iterator[None]:
    """Raise any failure of the block as a classified BackendError whose message names `target`.

    The AWS wires' one way to fail: the pool retries by the kind, people read the target.
    """
    try:
        yield
    except BackendError as error:
        raise naming_target(error, target) from error
    except Exception as error:  # translate_exception re-raises what it does not know
        raise translate_exception(error, target) from error
