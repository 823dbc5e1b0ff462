"""The backend registry: each wire declares its keys, checks, pricing and how its client is built.

Config checks, cost, the plan and deploy ask a declaration, never a backend's name. Built-in
declarations are in `builtin_backends`; others come from the `visinstruct.backends` entry points.
"""

from __future__ import annotations

import difflib
import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from visinstruct.core.config.sections import ModelConfig
from visinstruct.core.errors import ConfigError

ENTRY_POINT_GROUP = "visinstruct.backends"

# How a backend's calls cost money (core/store/cost.py prices each kind).
TOKENS = "tokens"                  # price_in/out_per_million per token
INSTANCE_HOURS = "instance_hours"  # price_per_instance_hour while the run goes, per instance
BATCH_TOKENS = "batch_tokens"      # batch prices per token; calls outside a batch job cost double
PRICING_KINDS = (TOKENS, INSTANCE_HOURS, BATCH_TOKENS)

Check = Callable[[ModelConfig, str], None]
Builder = Callable[[ModelConfig], Any]
# (model) -> "" when this model's requests can carry pictures, else the fix, said in the error.
ImageWire = Callable[[ModelConfig], str]
Judgement = Callable[[ModelConfig], bool]


@dataclass(frozen=True)
class BackendSpec:
    """What a backend is: its name, the [models.X] keys it reads and checks, and its client.

    `build` is a callable or a "module:function" string imported only when a client is built,
    so declaring a backend costs no SDK import (and the nouns layer imports no models code).
    """

    name: str
    build: Builder | str
    keys: tuple[str, ...] = ()          # the [models.X] keys it reads, beyond the common ones
    check: Check | None = None          # (model, "origin: [models.X]") -> raise ConfigError
    pricing: str = TOKENS
    runs_batch_jobs: bool = False       # its stage work goes out as batch jobs, not calls
    needs_aws_credentials: bool = False
    aws_bearer_token_env: str = ""      # an API key in this variable signs instead of IAM
    runs_locally: bool = False          # calls cost nothing: no money to plan for
    carries_images: ImageWire | None = None  # None: the wire sends text only
    sees_by_default: Judgement | None = None  # `vision`'s default for a model (None: false)
    summary: str = ""                   # one line for docs and errors
    default_model: str = ""             # what it runs when its table names no model (provenance)

    def validate(self, model: ModelConfig, where: str) -> None:
        """Refuse a [models.X] table this backend cannot work with (ConfigError, exit 2)."""
        if self.check is not None:
            self.check(model, where)

    def image_refusal(self, model: ModelConfig) -> str:
        """The fix when `model`'s requests cannot carry pictures ("set ..."); "" when they can."""
        if self.carries_images is None:
            return f"vision = false (backend {self.name} sends text only)"
        return self.carries_images(model)

    def make(self, model: ModelConfig) -> Any:
        """Build the client for `model` (the wire's SDK is imported here, not before)."""
        build = self.build
        if isinstance(build, str):
            module, _, attribute = build.partition(":")
            build = getattr(importlib.import_module(module), attribute)
        return build(model)


_MODEL_KEYS = frozenset(f.name for f in fields(ModelConfig)) - {"name", "backend"}


def spec_for(model: ModelConfig) -> BackendSpec:
    """The declaration of `model`'s backend (ConfigError when no backend has that name)."""
    return backend_spec(model.backend, f"[models.{model.name}]")


def sees_images(model: ModelConfig) -> bool:
    """Whether `model` is sent pictures: its `vision` key, else its backend's default for it.

    The default is never true on a wire that cannot carry the picture; `vision = true` there
    is a config error (core/config/checks.py).
    """
    if model.vision is not None:
        return model.vision
    spec = spec_for(model)
    return (spec.sees_by_default is not None and spec.sees_by_default(model)
            and not spec.image_refusal(model))


def known_spec(name: str) -> BackendSpec | None:
    """The declaration called `name`, or None when no installed backend has that name (a
    name recorded by an earlier run, say, whose plugin is gone)."""
    try:
        return backend_spec(name)
    except ConfigError:
        return None


def backend_spec(name: str, where: str = "") -> BackendSpec:
    """The declaration called `name`: a built-in, else a plugin's; ConfigError naming it if none."""
    from visinstruct.core.config.builtin_backends import BUILTIN

    spec = BUILTIN.get(name)
    if spec is not None:
        return spec
    spec = plugin_backends().get(name)
    if spec is None:
        known = backend_names()
        match = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f"; did you mean {match[0]!r}?" if match else ""
        raise ConfigError(f"{where + '.' if where else ''}backend {name!r} is not one of "
                          f"{', '.join(known)}{hint}")
    return spec


def backend_names() -> tuple[str, ...]:
    """Every backend a config may name: the built-ins first, then the plugins'."""
    from visinstruct.core.config.builtin_backends import BUILTIN

    return (*BUILTIN, *plugin_backends())


@functools.cache
def plugin_backends() -> Mapping[str, BackendSpec]:
    """The backends the installed `visinstruct.backends` entry points declare, loaded once.

    A plugin that fails to load, clashes with a built-in or another plugin, or declares
    something that is not a usable BackendSpec is a ConfigError naming it.
    """
    from visinstruct.core.config.builtin_backends import BUILTIN

    found: dict[str, BackendSpec] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        label = f"backend plugin {entry.name!r} ({entry.value})"
        if entry.name in BUILTIN:
            raise ConfigError(f"{label} clashes with the built-in backend {entry.name!r}; "
                              "give its entry point another name")
        if entry.name in found:
            raise ConfigError(f"{label}: another installed plugin already declares backend "
                              f"{entry.name!r}; uninstall one of them")
        found[entry.name] = _load(entry, label)
    return found


def forget_plugins() -> None:
    """Look for plugins again on the next lookup (after installing one in a running process)."""
    plugin_backends.cache_clear()


def _load(entry: EntryPoint, label: str) -> BackendSpec:
    try:
        spec = entry.load()
    except Exception as exc:  # noqa: BLE001 - any import failure becomes one config error
        first = (str(exc).splitlines() or [""])[0]
        raise ConfigError(f"{label} failed to load: {type(exc).__name__}: {first}") from exc
    if not isinstance(spec, BackendSpec):
        raise ConfigError(f"{label} must point at a BackendSpec, got {type(spec).__name__}")
    if spec.name != entry.name:
        raise ConfigError(f"{label} declares the name {spec.name!r}; the entry point and the "
                          "declaration must name the backend alike")
    if spec.pricing not in PRICING_KINDS:
        raise ConfigError(f"{label}: pricing must be one of {', '.join(PRICING_KINDS)}, "
                          f"got {spec.pricing!r}")
    unknown = [key for key in spec.keys if key not in _MODEL_KEYS]
    if unknown:
        raise ConfigError(f"{label} reads {', '.join(unknown)}, which [models.X] tables do not "
                          f"have; use keys of core/config/sections.py's ModelConfig")
    return spec
