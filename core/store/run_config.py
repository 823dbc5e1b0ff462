"""The config each run ran with, kept in its `runs.config` row, and the config `prepare` was
given (kept in meta), read back so a later run or the app's Start uses the store's own config."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from visinstruct.core.config import Config, ModelConfig, _apply_overrides, _from_raw, validate
from visinstruct.core.errors import ConfigError
from visinstruct.core.sanitize.redact import redact
from visinstruct.core.store.database import Store


def _plain(value: Any) -> Any:
    """A dataclass field as TOML would hold it: paths as strings, tuples as lists, None left out."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    return value


def config_record(config: Config) -> dict[str, Any]:
    """The whole config as a raw TOML-shaped dict (absolute paths), enough to rebuild it."""
    raw: dict[str, Any] = {"db": str(Path(config.db).resolve())}
    for section in ("source", "generation", "judge", "evaluation", "budget", "gates",
                    "download"):
        body = asdict(getattr(config, section))
        # Every path absolute, so the record means the same files from any working folder.
        raw[section] = {k: str(v.resolve()) if isinstance(v, Path) else _plain(v)
                        for k, v in body.items() if v is not None}
    models: dict[str, Any] = {}
    defaults = {f.name: f.default for f in fields(ModelConfig)}
    for name, model in config.models.items():
        body = {k: _plain(v) for k, v in asdict(model).items()
                if k != "name" and (k == "backend" or v != defaults.get(k))}
        models[name] = body
    raw["models"] = models
    return raw


def settings_json(config: Config) -> str:
    """What a run writes to `runs.config`: the summary keys readers use, and the whole config."""
    # Redacted: a base_url may carry a password (a resumed run then needs the config again).
    return redact(json.dumps({"generation": _plain(asdict(config.generation)),
                              "judge": _plain(asdict(config.judge)),
                              "gates": _plain(asdict(config.gates)), "origin": config.origin,
                              "config": config_record(config)}, default=str))


PREPARED_KEY = "prepared_config"  # meta: the config `prepare` was given, and the runs before it


def record_prepared_config(store: Store, config: Config) -> None:
    """Remember the config `prepare` indexed with (the source it really read), so a later `run`
    or the app's Start on this store uses it rather than the embedded defaults."""
    after = int(store.scalar("SELECT COALESCE(MAX(id), 0) FROM runs") or 0)
    origin = config.origin if config.origin.startswith("<") else \
        str(Path(config.origin).resolve())
    store.set_meta(PREPARED_KEY, redact(json.dumps(
        {"after_run": after, "origin": origin, "config": config_record(config)},
        default=str)))


def _rebuilt(raw: Any, origin: str) -> Config | None:
    """A recorded config dict as a Config, or None when it no longer holds (e.g. a source
    file moved since: the caller falls back to the given config)."""
    if not isinstance(raw, dict):
        return None
    try:
        config = _from_raw(raw, origin, Path("/"))
        validate(config)
    except ConfigError:
        return None
    return config


_RECORDED = "the config "  # how a recorded config's origin begins (see `_whence`)


def _whence(recorded: dict[str, Any]) -> str:
    """' (from run.toml)': the file a recorded config was first read from, when it was one.

    A config read back from the store and run again carries its own origin ('the config run
    1 recorded in ... (from run.toml)'): the file is taken from it, so origins never nest.
    """
    first = recorded.get("origin")
    if not isinstance(first, str) or not first or first.startswith("<"):
        return ""
    if first.startswith(_RECORDED):
        found = re.search(r" \(from (.+)\)$", first)
        return f" (from {found.group(1)})" if found else ""
    return f" (from {first})"


def recorded_config(store: Store) -> Config | None:
    """The config this store was last run or prepared with, whichever came later; its `origin`
    says which (the start dialog shows it). None when neither recorded one that still holds."""
    run = stored_run_config(store)
    try:
        prepared = json.loads(store.get_meta(PREPARED_KEY) or "{}")
    except ValueError:
        prepared = {}
    if isinstance(prepared, dict) and prepared.get("config") is not None:
        after = prepared.get("after_run")
        if run is None or (isinstance(after, int) and after >= run[0]):
            config = _rebuilt(prepared["config"], f"{_RECORDED}`prepare` recorded in "
                                                  f"{store.path}{_whence(prepared)}")
            if config is not None:
                return config
    return run[1] if run is not None else None


def stored_run_config(store: Store, run_id: int | None = None) -> tuple[int, Config] | None:
    """(run id, the config it ran with) of `run_id` or the latest run that recorded one."""
    where, params = ("WHERE id = ?", (run_id,)) if run_id is not None else ("", ())
    for found_id, settings in store.query(
            f"SELECT id, config FROM runs {where} ORDER BY id DESC LIMIT 20", params):
        try:
            recorded = json.loads(settings or "{}")
            raw = recorded.get("config")
        except (ValueError, AttributeError):
            continue
        config = _rebuilt(raw, f"{_RECORDED}run {found_id} recorded in {store.path}"
                               f"{_whence(recorded)}")
        if config is not None:
            return int(found_id), config
    return None


def config_for_store(store: Store, given: Config, overrides: Mapping[str, Any]) -> Config:
    """The config a run on `store` uses when no --config file was given: the one the store
    recorded (its last run's or `prepare`'s) with the --set `overrides` on top, on this store;
    `given` (the embedded defaults with the overrides) when it recorded none."""
    recorded = recorded_config(store)
    if recorded is None:
        return given
    config = _apply_overrides(recorded, {**overrides, "db": given.db}, recorded.origin)
    validate(config)
    return config
