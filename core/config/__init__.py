"""Run configuration (docs/configuration.md): embedded defaults, CLI overrides, validation.

The sections live in `sections`, the checks in `checks`; this module loads and overrides.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from visinstruct.core.config.backends import (
    BATCH_TOKENS,
    ENTRY_POINT_GROUP,
    INSTANCE_HOURS,
    PRICING_KINDS,
    TOKENS,
    BackendSpec,
    backend_names,
    backend_spec,
    forget_plugins,
    known_spec,
    plugin_backends,
    sees_images,
    spec_for,
)
from visinstruct.core.config.builtin_backends import BACKENDS, batch_family, check_gguf
from visinstruct.core.config.checks import check_ranges, validate, validate_fact_sources
from visinstruct.core.config.sections import (
    _MODEL_PATH_KEYS,
    _PATH_KEYS,
    _SECTIONS,
    _TOP_KEYS,
    BATCH_FAMILIES,
    JUDGE_COMBINE,
    OPENAI_JSON_MODES,
    SAGEMAKER_SCHEMAS,
    UNGROUNDED_ACTIONS,
    BudgetConfig,
    Config,
    DownloadConfig,
    EvaluationConfig,
    GatesConfig,
    GenerationConfig,
    JudgeConfig,
    ModelConfig,
    SourceConfig,
    default_config,
    default_models,
)
from visinstruct.core.errors import ConfigError

__all__ = ["BACKENDS", "BATCH_FAMILIES", "BATCH_TOKENS", "ENTRY_POINT_GROUP", "INSTANCE_HOURS",
           "JUDGE_COMBINE", "OPENAI_JSON_MODES", "PRICING_KINDS", "SAGEMAKER_SCHEMAS", "TOKENS",
           "UNGROUNDED_ACTIONS", "BackendSpec", "BudgetConfig", "Config", "DownloadConfig",
           "EvaluationConfig", "GatesConfig", "GenerationConfig", "JudgeConfig", "ModelConfig",
           "SourceConfig", "backend_names", "backend_spec", "batch_family", "check_gguf",
           "check_ranges", "default_config", "default_models", "forget_plugins", "known_spec",
           "load_config",
           "parse_override", "plugin_backends", "sees_images", "spec_for", "validate",
           "validate_fact_sources"]


# Keys whose default is "decided elsewhere" (None) but that a config sets to true or false.
_OPTIONAL_BOOL_KEYS = frozenset({"vision"})


def load_config(path: Path | None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read `path` (or the embedded defaults when None), apply `overrides` and validate."""
    if path is None:
        config = default_config()
        raw: dict[str, Any] = {}
        origin = "<embedded defaults>"
        base = Path.cwd()
    else:
        origin = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found; check the path given to --config")
        try:
            # utf-8-sig: an editor's byte-order mark is read past, not a TOML error at 1:1.
            raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the config file: {exc}") from exc
        base = path.resolve().parent
        config = _from_raw(raw, origin, base)
    if overrides:
        config = _apply_overrides(config, overrides, origin)
    validate(config)
    return config


def parse_override(text: str) -> tuple[str, Any]:
    """Turn `section.key=value` (from `--set`) into a key and a TOML-typed value."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. judge.threshold=8")
    key, value = text.split("=", 1)
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key.strip(), parsed


def _nearest(key: str, valid: Any) -> str:
    match = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else f"; valid keys: {', '.join(valid)}"


def _check_keys(raw: Mapping[str, Any], valid: Any, where: str, origin: str) -> None:
    for key in raw:
        if key not in valid:
            raise ConfigError(f"{origin}: unknown key {where}{key}{_nearest(key, valid)}")


def _coerce(cls: type, name: str, raw: Mapping[str, Any], where: str, origin: str, base: Path,
            extra: Mapping[str, Any] | None = None) -> Any:
    """Build dataclass `cls` from `raw`, checking every key and value type."""
    fields = {f.name: f for f in cls.__dataclass_fields__.values()}  # type: ignore[attr-defined]
    settable = [k for k in fields if k != "name"]
    _check_keys(raw, settable, where, origin)
    defaults = cls(**(extra or {}))
    values: dict[str, Any] = dict(extra or {})
    for key, value in raw.items():
        current = getattr(defaults, key)
        values[key] = _typed(value, current, key, f"{where}{key}", origin, base)
    return cls(**values)


def _typed(value: Any, current: Any, key: str, label: str, origin: str, base: Path) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{origin}: {label} must be {expected}, got {value!r}")

    if key in _PATH_KEYS:
        if not isinstance(value, str):
            raise bad("a path string")
        if not value:
            return None if key != "data_dir" else Path("data")
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else base / p
    if key in _MODEL_PATH_KEYS:
        if not isinstance(value, str):
            raise bad("a path string")
        if not value:
            return value
        p = Path(os.path.expanduser(value))
        return str(p if p.is_absolute() else base / p)
    if isinstance(current, bool) or key in _OPTIONAL_BOOL_KEYS:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if isinstance(current, int) and not isinstance(current, bool) and key != "threshold":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("a whole number")
        return value
    if isinstance(current, float) or key == "threshold":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if isinstance(current, tuple):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        return tuple(value)
    if isinstance(current, str):
        if not isinstance(value, str):
            raise bad("a string")
        return value
    return value


def _from_raw(raw: Mapping[str, Any], origin: str, base: Path) -> Config:
    _check_keys(raw, _TOP_KEYS, "", origin)
    defaults = default_config()
    kwargs: dict[str, Any] = {"origin": origin}
    if "db" in raw:
        if not isinstance(raw["db"], str) or not raw["db"]:
            raise ConfigError(f"{origin}: db must be a path string, got {raw['db']!r}")
        db = Path(os.path.expanduser(raw["db"]))
        kwargs["db"] = db if db.is_absolute() else base / db
    for section, cls in _SECTIONS.items():
        if section not in raw:
            # [source] falls back to the sample data only when the file names no source at all.
            kwargs[section] = getattr(defaults, section)
            continue
        body = raw[section]
        if not isinstance(body, dict):
            raise ConfigError(f"{origin}: [{section}] must be a table")
        kwargs[section] = _coerce(cls, section, body, f"[{section}].", origin, base)
    models = default_models()
    raw_models = raw.get("models", {})
    if not isinstance(raw_models, dict):
        raise ConfigError(f"{origin}: [models] must hold tables such as [models.mixtral]")
    for name, body in raw_models.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{origin}: [models.{name}] must be a table")
        if "backend" not in body:
            raise ConfigError(
                f"{origin}: [models.{name}] needs backend = one of {', '.join(backend_names())}"
            )
        models[name] = _coerce(
            ModelConfig, name, body, f"[models.{name}].", origin, base,
            extra={"name": name, "backend": body["backend"]},
        )
    kwargs["models"] = models
    return Config(**kwargs)


def _apply_overrides(config: Config, overrides: Mapping[str, Any], origin: str) -> Config:
    """Apply CLI overrides such as {'db': Path, 'source.limit': 5, 'judge.threshold': 8}."""
    for dotted, value in overrides.items():
        if value is None:
            continue
        if dotted == "db":
            if not isinstance(value, (str, os.PathLike)) or not str(value):
                raise ConfigError(f"--set db: must be a path string, got {value!r}")
            config = replace(config, db=Path(value))
            continue
        parts = dotted.split(".")
        if parts[0] == "models" and len(parts) == 3:
            name, key = parts[1], parts[2]
            if name not in config.models:
                raise ConfigError(f"--set {dotted}: no model named {name!r}")
            model = config.models[name]
            _check_keys({key: value}, [k for k in model.__dataclass_fields__ if k != "name"],
                        f"[models.{name}].", "--set")
            typed = _typed(value, getattr(model, key), key, dotted, "--set", Path.cwd())
            config = replace(config, models={**config.models, name: replace(model, **{key: typed})})
            continue
        if len(parts) != 2 or parts[0] not in _SECTIONS:
            raise ConfigError(
                f"--set {dotted}: expected section.key with section one of {', '.join(_SECTIONS)}"
            )
        section, key = parts
        current = getattr(config, section)
        _check_keys({key: value}, list(current.__dataclass_fields__), f"[{section}].", "--set")
        typed = _typed(value, getattr(current, key), key, dotted, "--set", Path.cwd())
        config = replace(config, **{section: replace(current, **{key: typed})})
    return config


