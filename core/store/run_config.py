"""The config each run ran with, kept in its `runs.config` row, and read back to resume it."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from visinstruct.core.config import Config, ModelConfig, _from_raw, validate
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


def stored_run_config(store: Store, run_id: int | None = None) -> tuple[int, Config] | None:
    """(run id, the config it ran with) of `run_id` or the latest run that recorded one."""
    where, params = ("WHERE id = ?", (run_id,)) if run_id is not None else ("", ())
    for found_id, settings in store.query(
            f"SELECT id, config FROM runs {where} ORDER BY id DESC LIMIT 20", params):
        try:
            raw = json.loads(settings or "{}").get("config")
        except (ValueError, AttributeError):
            continue
        if not isinstance(raw, dict):
            continue
        origin = f"the config run {found_id} recorded in {store.path}"
        try:
            config = _from_raw(raw, origin, Path("/"))
            validate(config)
        except ConfigError:
            continue  # e.g. a source file moved since: fall back to the given config
        return int(found_id), config
    return None
