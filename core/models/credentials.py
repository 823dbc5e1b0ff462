"""Before the first call: AWS models must have credentials and a region, or the command stops."""

from __future__ import annotations

import os
from collections.abc import Iterable

from visinstruct.core.config import BackendSpec, Config, ModelConfig, spec_for
from visinstruct.core.errors import ConfigError


def check_aws_access(config: Config, names: Iterable[str], *, hint: str = "") -> None:
    """Resolve credentials and region for every named AWS model; ConfigError (exit 2) if missing.

    Without this a run sends every call only to have each fail for want of credentials.
    """
    for name in dict.fromkeys(names):
        model = config.model(name)
        spec = spec_for(model)
        if spec.needs_aws_credentials:
            _check_model(model, spec, hint)


def _check_model(model: ModelConfig, spec: BackendSpec, hint: str) -> None:
    import botocore.session
    from botocore.exceptions import BotoCoreError

    where = f"[models.{model.name}] (backend {model.backend})"
    session = botocore.session.Session()
    region = model.region or session.get_config_variable("region")
    if not region:
        raise ConfigError(f"{where}: no AWS region; set region in the config or AWS_REGION{hint}")
    if spec.aws_bearer_token_env and os.environ.get(spec.aws_bearer_token_env):
        return  # an API key (Bedrock's) signs requests without IAM credentials
    try:
        credentials = session.get_credentials()
        # Frozen credentials are the ones a call would sign with: an expired SSO login or a
        # failing credential_process shows up here rather than on every call.
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
    except (BotoCoreError, OSError, ValueError) as exc:
        raise ConfigError(
            f"{where} in {region}: cannot load AWS credentials ({exc}){hint}") from exc
    if frozen is None or not frozen.access_key or not frozen.secret_key:
        raise ConfigError(
            f"{where} in {region}: no AWS credentials found; set AWS_PROFILE or "
            f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY{hint}")
