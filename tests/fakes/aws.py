"""Pointing real boto3 clients at the loopback fakes, and AWS-shaped error replies."""

from __future__ import annotations

import os
import uuid
from typing import Any

from tests.fakes.loopback import WireResponse, json_response

FAKE_ACCOUNT = "123456789012"
# Settings that would make boto3 retry, reach a real endpoint or use a real identity.
_CLEARED_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
    "AWS_ENDPOINT_URL",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


def aws_env_vars(
    *, sagemaker_url: str | None = None, bedrock_url: str | None = None, region: str = "us-east-1"
) -> dict[str, str]:
    """Environment for a process whose boto3 clients must reach only the fakes, with dummy keys."""
    missing = os.path.join(os.sep, "nonexistent", "visinstruct-aws")
    variables = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_CONFIG_FILE": missing,
        "AWS_SHARED_CREDENTIALS_FILE": missing,
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    if sagemaker_url:
        variables["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = sagemaker_url
    if bedrock_url:
        variables["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] = bedrock_url
    return variables


def aws_env(
    monkeypatch: Any,
    *,
    sagemaker_url: str | None = None,
    bedrock_url: str | None = None,
    region: str = "us-east-1",
) -> None:
    """Set (through pytest's monkeypatch) the environment of aws_env_vars() in this process."""
    for name in _CLEARED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in aws_env_vars(
        sagemaker_url=sagemaker_url, bedrock_url=bedrock_url, region=region
    ).items():
        monkeypatch.setenv(name, value)


def request_id_header() -> tuple[str, str]:
    """The x-amzn-RequestId header every AWS reply carries."""
    return ("x-amzn-RequestId", str(uuid.uuid4()))


def aws_error(
    status: int, code: str, message: str | None, *, namespace: str, **fields: Any
) -> WireResponse:
    """An AWS rest-json error: x-amzn-ErrorType header (with its coral suffix) and a JSON body."""
    return json_response(
        status,
        {"message": message, **fields},
        request_id_header(),
        ("x-amzn-ErrorType", f"{code}:http://internal.amazon.com/coral/{namespace}/"),
    )
