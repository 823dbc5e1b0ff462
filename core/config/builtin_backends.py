"""The six built-in backends, declared once: their keys, their checks and where their client is."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from visinstruct.core.config.backends import BATCH_TOKENS, INSTANCE_HOURS, BackendSpec
from visinstruct.core.config.sections import (
    BATCH_FAMILIES,
    OPENAI_JSON_MODES,
    SAGEMAKER_SCHEMAS,
    ModelConfig,
)
from visinstruct.core.errors import ConfigError

_WIRES = "visinstruct.core.models.backends"


def _check_sagemaker(model: ModelConfig, where: str) -> None:
    if not model.endpoints:
        raise ConfigError(f"{where} needs endpoints = [\"name\", ...] for backend sagemaker")
    if model.schema not in SAGEMAKER_SCHEMAS:
        raise ConfigError(f"{where}.schema must be one of {', '.join(SAGEMAKER_SCHEMAS)}")


def _check_bedrock(model: ModelConfig, where: str) -> None:
    if not model.model_id:
        raise ConfigError(f"{where} needs model_id for backend bedrock")
    if model.api not in ("invoke", "converse"):
        raise ConfigError(f"{where}.api must be invoke or converse")


def _check_bedrock_batch(model: ModelConfig, where: str) -> None:
    """The keys a Bedrock batch job needs, checked before any record is written."""
    if not batch_family(model.model_id):
        raise ConfigError(f"{where}.model_id must name an {', '.join(BATCH_FAMILIES)} model "
                          f"for backend bedrock-batch, got {model.model_id!r}")
    bucket = model.s3_uri[5:].split("/", 1)[0] if model.s3_uri.startswith("s3://") else ""
    if not bucket:
        raise ConfigError(f"{where}.s3_uri must be s3://bucket/prefix/ (where records and "
                          f"outputs go), got {model.s3_uri!r}")
    if not (model.role_arn.startswith("arn:aws") and ":role/" in model.role_arn):
        raise ConfigError(f"{where}.role_arn must be the ARN of the IAM role Bedrock uses "
                          f"(arn:aws:iam::ACCOUNT:role/NAME), got {model.role_arn!r}")
    if model.min_records < 1:
        raise ConfigError(f"{where}.min_records must be at least 1")
    if model.max_records_per_job < model.min_records:
        raise ConfigError(f"{where}.max_records_per_job must be at least min_records "
                          f"({model.min_records})")
    if model.poll_seconds <= 0:
        raise ConfigError(f"{where}.poll_seconds must be more than 0")
    if not 24 <= model.timeout_hours <= 168:
        raise ConfigError(f"{where}.timeout_hours must be between 24 and 168 (Bedrock's limits)")


def _check_openai(model: ModelConfig, where: str) -> None:
    if not (model.base_url or model.base_urls or os.environ.get("OPENAI_BASE_URL")):
        raise ConfigError(f"{where} needs base_url (or OPENAI_BASE_URL) for backend openai")
    for url in (model.base_url, *model.base_urls):
        parts = urlsplit(url)
        if url and (parts.scheme not in ("http", "https") or not parts.hostname):
            # The URL itself is not echoed: it may carry a password.
            raise ConfigError(f"{where}.base_url must be an http:// or https:// URL with a "
                              f"host (its scheme is {parts.scheme!r}); write it "
                              "like http://host:8000/v1")
    if not model.model:
        raise ConfigError(f"{where} needs model = the served model's name for backend openai")
    if model.json_mode not in OPENAI_JSON_MODES:
        raise ConfigError(f"{where}.json_mode must be one of "
                          f"{', '.join(OPENAI_JSON_MODES)}, got {model.json_mode!r}")


def _check_local(model: ModelConfig, where: str) -> None:
    if model.gguf:
        check_gguf(Path(model.gguf), where)


def _check_scripted(model: ModelConfig, where: str) -> None:
    if model.script and not Path(model.script).is_file():
        raise ConfigError(f"{where}.script file not found: {model.script}")


# Bedrock model ids of models that take images: Claude 3 and later, Nova Lite and Pro,
# Llama 3.2 11B and 90B, Pixtral.
_SEEING_BEDROCK_MODEL = re.compile(
    r"(?:anthropic\.claude-(?:3|(?:opus|sonnet|haiku)-[4-9])"
    r"|amazon\.nova-(?:lite|pro)|meta\.llama3-2-(?:11|90)b|mistral\.pixtral)",
    re.IGNORECASE)


def sees_on_bedrock(model: ModelConfig) -> bool:
    """Whether the Bedrock model id names a model known to take images."""
    return bool(_SEEING_BEDROCK_MODEL.search(model.model_id))


def _bedrock_images(model: ModelConfig) -> str:
    # Converse carries an image block for any model; InvokeModel bodies only Anthropic's.
    if model.api == "converse" or batch_family(model.model_id) == "anthropic":
        return ""
    return 'api = "converse" (InvokeModel bodies carry pictures for Anthropic models only)'


def _batch_images(model: ModelConfig) -> str:
    if batch_family(model.model_id) == "anthropic":
        return ""
    return ("an anthropic. model id (batch records carry pictures in Anthropic bodies only), "
            "or vision = false")


def _sagemaker_images(model: ModelConfig) -> str:
    return "" if model.schema == "messages" else (
        f'schema = "messages" (the {model.schema} schema sends a text prompt only)')


def _always(model: ModelConfig) -> str:
    return ""


def batch_family(model_id: str) -> str:
    """The provider of a Bedrock model id ("us.anthropic.claude-..." -> "anthropic"), or ""."""
    parts = model_id.split(".")
    # Cross-region inference profiles put a geography first.
    geography = len(parts) > 2 and parts[0] in ("us", "eu", "apac", "global")
    provider = parts[1] if geography else parts[0]
    return provider if provider in BATCH_FAMILIES else ""


def check_gguf(path: Path, where: str) -> None:
    """Refuse a GGUF path that is missing or is not a GGUF file (checked by its magic bytes)."""
    if not path.is_file():
        raise ConfigError(f"{where}.gguf file not found: {path}")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise ConfigError(f"{where}.gguf is not a GGUF model file: {path}")


_BEDROCK_KEYS = ("model_id", "region")
_BATCH_KEYS = ("s3_uri", "role_arn", "min_records", "max_records_per_job", "poll_seconds",
               "timeout_hours", "on_demand_remainder")

BUILTIN: dict[str, BackendSpec] = {spec.name: spec for spec in (
    BackendSpec(
        "sagemaker", f"{_WIRES}.sagemaker:from_config",
        keys=("endpoints", "schema", "region", "stream", "instances", "price_per_instance_hour",
              "call_timeout"),
        check=_check_sagemaker, pricing=INSTANCE_HOURS, needs_aws_credentials=True,
        carries_images=_sagemaker_images,
        summary="SageMaker real-time endpoints speaking TGI, LMI or Messages payloads"),
    BackendSpec(
        "bedrock", f"{_WIRES}.bedrock:from_config", keys=(*_BEDROCK_KEYS, "api"),
        check=_check_bedrock, needs_aws_credentials=True,
        aws_bearer_token_env="AWS_BEARER_TOKEN_BEDROCK",
        carries_images=_bedrock_images, sees_by_default=sees_on_bedrock,
        summary="a model on Amazon Bedrock through InvokeModel or Converse"),
    BackendSpec(
        "bedrock-batch", f"{_WIRES}.bedrock:remainder_from_config",
        keys=(*_BEDROCK_KEYS, *_BATCH_KEYS), check=_check_bedrock_batch, pricing=BATCH_TOKENS,
        runs_batch_jobs=True, needs_aws_credentials=True,
        aws_bearer_token_env="AWS_BEARER_TOKEN_BEDROCK",
        carries_images=_batch_images, sees_by_default=sees_on_bedrock,
        summary="Bedrock batch inference jobs, with the remainder sent on demand"),
    BackendSpec(
        "openai", f"{_WIRES}.openai:from_config",
        keys=("base_url", "base_urls", "api_key_env", "model", "json_mode", "call_timeout"),
        check=_check_openai, carries_images=_always,
        summary="an OpenAI-compatible chat completions server"),
    BackendSpec(
        "local", f"{_WIRES}.local:from_config", keys=("gguf", "n_ctx", "n_threads", "contexts"),
        check=_check_local, runs_locally=True, default_model="the bundled GGUF (Gemma 3 270M)",
        summary="a GGUF model in this process through llama-cpp-python"),
    BackendSpec(
        "scripted", f"{_WIRES}.scripted:from_config", keys=("script", "endpoints"),
        check=_check_scripted, carries_images=_always,
        summary="a test double answering from a script or a built-in responder"),
)}
BACKENDS: tuple[str, ...] = tuple(BUILTIN)
