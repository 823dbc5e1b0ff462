"""boto3's SageMaker control plane for deploy and teardown: the client, errors, describe."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from visinstruct.core.errors import DeployError, InputError


def sagemaker_client(region: str) -> Any:
    """A SageMaker control-plane client; AWS_ENDPOINT_URL_SAGEMAKER (read by boto3) redirects it."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "sagemaker", region_name=region, config=Config(retries={"mode": "standard"}))


@contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Turn boto3 failures inside the block into one-line project errors."""
    from botocore import exceptions as boto

    try:
        yield
    except boto.ClientError as exc:
        details = exc.response.get("Error", {})
        raise DeployError(f"{action}: {details.get('Code', 'Error')}: "
                          f"{details.get('Message') or 'no message from SageMaker'}") from None
    except boto.NoCredentialsError:
        raise InputError(f"{action}: no AWS credentials found; set AWS_PROFILE or "
                         "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY") from None
    except boto.EndpointConnectionError as exc:
        raise DeployError(f"{action}: cannot reach {exc.kwargs.get('endpoint_url')}; "
                          "check --region and the network") from None
    except boto.BotoCoreError as exc:
        raise DeployError(f"{action}: {exc}") from None


def is_not_found(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    details = exc.response.get("Error", {})
    # SageMaker says "not found" as a ValidationException whose message starts "Could not find".
    return details.get("Code") in ("ResourceNotFound", "ResourceNotFoundException") or (
        details.get("Code") == "ValidationException"
        and "could not find" in str(details.get("Message", "")).lower())


# Per kind of resource: boto3's describe and delete operations and the name parameter.
OPERATIONS = {
    "endpoint": ("describe_endpoint", "delete_endpoint", "EndpointName"),
    "endpoint config": ("describe_endpoint_config", "delete_endpoint_config",
                        "EndpointConfigName"),
    "model": ("describe_model", "delete_model", "ModelName"),
}


def describe_or_none(client: Any, kind: str, name: str) -> dict[str, Any] | None:
    """SageMaker's description of one resource, or None if there is none by that name."""
    describe, _, parameter = OPERATIONS[kind]
    with aws_errors(f"describing {kind} {name}"):
        try:
            return dict(getattr(client, describe)(**{parameter: name}))
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise
