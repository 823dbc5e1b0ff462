"""Every numeric config key has a range: a value outside it names the key and the range (exit 2)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from visinstruct.core.config import ModelConfig, load_config
from visinstruct.core.errors import ConfigError, ExitCode

MODEL = '[models.m]\nbackend = "scripted"\n'


def refused(overrides: dict[str, object], text: str = "") -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(None, overrides)
    assert caught.value.exit_code == ExitCode.BAD_INPUT
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("generation.max_tokens", -5, "at least 1"),
    ("generation.max_tokens", 0, "at least 1"),
    ("generation.temperature", -3, "at least 0 and at most 2"),
    ("generation.top_p", 7.5, "above 0 and at most 1"),
    ("generation.top_p", 0, "above 0 and at most 1"),
    ("judge.max_tokens", -1, "at least 1"),
    ("judge.temperature", 2.5, "at most 2"),
    ("evaluation.max_tokens", 0, "at least 1"),
    ("evaluation.seed", -1, "at least 0"),
    ("budget.max_usd", float("nan"), "at least 0"),
    ("models.tiny.read_timeout", -1.0, "above 0"),
    ("models.tiny.read_timeout", 0, "above 0"),
    ("models.tiny.probe_seconds", -30, "above 0"),
    ("models.tiny.price_in_per_million", -0.5, "at least 0"),
    ("models.tiny.price_out_per_million", float("inf"), "at least 0"),
    ("models.tiny.price_per_instance_hour", -2, "at least 0"),
    ("models.tiny.n_ctx", 0, "at least 1"),
    ("models.tiny.n_threads", -4, "at least 0"),
    ("models.tiny.contexts", 0, "at least 1"),
    ("models.tiny.instances", 0, "at least 1"),
    ("models.claude.max_in_flight", 0, "at least 1"),
])
def test_out_of_range_values_name_the_key_and_range(key: str, value: object, allowed: str) -> None:
    message = refused({key: value})
    assert key.split(".")[-1] in message and allowed in message, message


def test_a_range_error_from_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(f'{MODEL}[generation]\nmodel = "m"\ntop_p = 7.5\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value) and "[generation].top_p" in str(caught.value)


@pytest.mark.parametrize(("key", "value"), [
    ("generation.temperature", 0), ("generation.temperature", 2), ("generation.top_p", 1),
    ("judge.temperature", 0.0), ("models.tiny.n_threads", 0), ("budget.max_usd", 0),
    ("evaluation.sample", 0), ("source.limit", 0),
])
def test_edges_of_the_ranges_are_accepted(key: str, value: object) -> None:
    load_config(None, {key: value})


def test_every_numeric_model_key_is_checked() -> None:
    """A key added later without a range entry still refuses negatives."""
    numeric = [f.name for f in fields(ModelConfig) if f.type in ("int", "float")]
    assert numeric
    for key in numeric:
        message = refused({f"models.tiny.{key}": -7})
        assert key in message


def test_unknown_json_mode_is_refused_before_anything_runs(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('[generation]\nmodel = "o"\n[models.o]\nbackend = "openai"\n'
                    'base_url = "http://127.0.0.1:1/v1"\nmodel = "x"\njson_mode = "grammar"\n',
                    encoding="utf-8")
    with pytest.raises(ConfigError, match="json_mode"):
        load_config(path)


@pytest.mark.parametrize(("key", "value"), [
    ("read_timeout", 1e10), ("probe_seconds", 1e10), ("poll_seconds", 1e9),
    ("price_in_per_million", 1.7e308), ("price_out_per_million", 1e7),
    ("price_per_instance_hour", 1e300),
])
def test_absurd_seconds_and_prices_are_refused_naming_the_range(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"\[models\.tiny\]\.{key} must be .*at most"):
        load_config(None, {f"models.tiny.{key}": value})


def test_a_config_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_bytes(b"\xef\xbb\xbf" + b'db = "bom.db"\n[judge]\nthreshold = 8\n')
    config = load_config(path)
    assert config.judge.threshold == 8 and Path(config.db).name == "bom.db"
