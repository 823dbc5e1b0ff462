"""Model wires, and the one way to build one: from the declaration of its [models.X] backend."""

from __future__ import annotations

from visinstruct.core.config import ModelConfig, spec_for
from visinstruct.core.models.backends.base import Backend


def make_backend(model: ModelConfig) -> Backend:
    """Build the backend a [models.X] table describes (SDKs are imported only when used)."""
    backend: Backend = spec_for(model).make(model)
    return backend
