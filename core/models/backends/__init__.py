"""Model wires and the factory that builds one from a [models.X] table."""

from __future__ import annotations

import os

from visinstruct.core.models.backends.base import Backend
from visinstruct.core.config import ModelConfig
from visinstruct.core.errors import ConfigError


def make_backend(model: ModelConfig) -> Backend:
    """Build the backend a [models.X] table describes (SDKs are imported only when used)."""
    if model.backend == "scripted":
        from visinstruct.core.models.backends.scripted import ScriptedBackend

        endpoints = model.endpoints or ("scripted",)
        return ScriptedBackend(model.script or None, endpoints=endpoints, name=model.name)
    if model.backend == "local":
        from visinstruct.core.models.backends.local import LocalBackend

        return LocalBackend(model.gguf or None, n_ctx=model.n_ctx, n_threads=model.n_threads,
                            contexts=model.contexts, name=model.name)
    if model.backend == "sagemaker":
        from visinstruct.core.models.backends.sagemaker import SageMakerBackend

        return SageMakerBackend(model.endpoints, schema=model.schema, region=model.region,
                                max_in_flight=model.max_in_flight,
                                read_timeout=model.read_timeout, stream=model.stream,
                                model_name=model.name)
    if model.backend == "bedrock":
        from visinstruct.core.models.backends.bedrock import BedrockBackend

        return BedrockBackend(model.model_id, region=model.region, api=model.api,
                              max_in_flight=model.max_in_flight,
                              read_timeout=max(model.read_timeout, 120.0))
    if model.backend == "bedrock-batch":
        # The pool of a batch model serves its on-demand remainder: the same model id on
        # InvokeModel (Anthropic bodies) or Converse (Mistral and Llama, which InvokeModel
        # would need their own bodies for).
        from visinstruct.core.config import batch_family
        from visinstruct.core.models.backends.bedrock import BedrockBackend

        return BedrockBackend(model.model_id, region=model.region,
                              api="invoke" if batch_family(model.model_id) == "anthropic"
                              else "converse", max_in_flight=model.max_in_flight,
                              read_timeout=max(model.read_timeout, 120.0))
    if model.backend == "openai":
        from visinstruct.core.models.backends.openai import OpenAIBackend

        base_urls = model.base_urls or ((model.base_url,) if model.base_url else ())
        return OpenAIBackend(base_urls[0] if base_urls else None, base_urls=base_urls,
                             model=model.model, api_key=os.environ.get(model.api_key_env),
                             max_in_flight=model.max_in_flight,
                             read_timeout=model.read_timeout, json_mode=model.json_mode)
    raise ConfigError(f"[models.{model.name}].backend {model.backend!r} is not supported")
