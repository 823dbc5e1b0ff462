"""The backend registry: built-in declarations, plugin discovery and its errors, and that no
code outside the registry asks a backend's name."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from visinstruct.core.config import (
    BACKENDS,
    BATCH_TOKENS,
    INSTANCE_HOURS,
    PRICING_KINDS,
    TOKENS,
    BackendSpec,
    ModelConfig,
    backend_names,
    backend_spec,
    forget_plugins,
    spec_for,
)
from visinstruct.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def plugin(site: Path, monkeypatch: pytest.MonkeyPatch, name: str, module: str,
           source: str) -> None:
    """Install a one-module plugin declaring backend `name` into `site` (on sys.path)."""
    dist = site / f"{module}-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[visinstruct.backends]\n{name} = {module}:BACKEND\n")
    (site / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, module, raising=False)  # an earlier case's module


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    forget_plugins()
    yield
    forget_plugins()


SPEC = ("from visinstruct.core.config import BackendSpec\n"
        "BACKEND = BackendSpec({name!r}, 'x:y'{extra})\n")


def test_the_built_ins_are_declared_once_with_what_cost_and_credentials_need() -> None:
    assert BACKENDS == ("sagemaker", "bedrock", "bedrock-batch", "openai", "local", "scripted")
    assert {name: backend_spec(name).pricing for name in BACKENDS} == {
        "sagemaker": INSTANCE_HOURS, "bedrock": TOKENS, "bedrock-batch": BATCH_TOKENS,
        "openai": TOKENS, "local": TOKENS, "scripted": TOKENS}
    assert [n for n in BACKENDS if backend_spec(n).needs_aws_credentials] == [
        "sagemaker", "bedrock", "bedrock-batch"]
    assert [n for n in BACKENDS if backend_spec(n).runs_batch_jobs] == ["bedrock-batch"]
    assert [n for n in BACKENDS if backend_spec(n).runs_locally] == ["local"]
    assert all(backend_spec(n).pricing in PRICING_KINDS for n in BACKENDS)


def test_every_declared_key_is_a_model_key() -> None:
    keys = set(ModelConfig.__dataclass_fields__)
    for name in BACKENDS:
        assert set(backend_spec(name).keys) <= keys, name


def test_an_unknown_backend_says_what_it_might_have_meant() -> None:
    with pytest.raises(ConfigError) as caught:
        spec_for(ModelConfig(name="m", backend="bedrok"))
    message = str(caught.value)
    assert "[models.m].backend 'bedrok' is not one of sagemaker, bedrock" in message
    assert message.endswith("did you mean 'bedrock'?")


def test_a_plugin_backend_is_found_and_built(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    plugin(tmp_path, monkeypatch, "mine", "mine_plugin",
           "from visinstruct.core.config import BackendSpec\n"
           "BACKEND = BackendSpec('mine', lambda model: ('built', model.name), keys=('model',))\n")

    spec = spec_for(ModelConfig(name="m", backend="mine"))

    assert isinstance(spec, BackendSpec)
    assert backend_names()[-1] == "mine"
    assert spec.make(ModelConfig(name="m", backend="mine")) == ("built", "m")


def test_plugins_are_not_loaded_while_only_built_ins_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin(tmp_path, monkeypatch, "broken", "broken_plugin", "raise RuntimeError('boom')\n")

    assert spec_for(ModelConfig(name="m", backend="scripted")).name == "scripted"


@pytest.mark.parametrize(("name", "source", "message"), [
    ("bedrock", SPEC.format(name="bedrock", extra=""),
     "backend plugin 'bedrock' (clash_plugin:BACKEND) clashes with the built-in backend "
     "'bedrock'; give its entry point another name"),
    ("mine", "import no_such_sdk\n",
     "backend plugin 'mine' (clash_plugin:BACKEND) failed to load: ModuleNotFoundError: "
     "No module named 'no_such_sdk'"),
    ("mine", "BACKEND = 'mine'\n",
     "backend plugin 'mine' (clash_plugin:BACKEND) must point at a BackendSpec, got str"),
    ("mine", SPEC.format(name="yours", extra=""),
     "backend plugin 'mine' (clash_plugin:BACKEND) declares the name 'yours'"),
    ("mine", SPEC.format(name="mine", extra=", pricing='hourly'"),
     "backend plugin 'mine' (clash_plugin:BACKEND): pricing must be one of tokens"),
    ("mine", SPEC.format(name="mine", extra=", keys=('colour',)"),
     "backend plugin 'mine' (clash_plugin:BACKEND) reads colour, which [models.X] tables"),
])
def test_a_bad_plugin_is_one_config_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str, message: str
) -> None:
    plugin(tmp_path, monkeypatch, name, "clash_plugin", source)

    with pytest.raises(ConfigError) as caught:
        spec_for(ModelConfig(name="m", backend="mine"))

    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_a_bad_plugin_stops_a_config_that_uses_plugins_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from visinstruct.core.config import load_config

    plugin(tmp_path / "site", monkeypatch, "mine", "bad_plugin", "raise ImportError('no sdk')\n")
    config = tmp_path / "run.toml"
    config.write_text('[generation]\nmodel = "m"\n[models.m]\nbackend = "mine"\n')

    with pytest.raises(ConfigError, match=r"backend plugin 'mine' \(bad_plugin:BACKEND\) "
                                          r"failed to load: ImportError: no sdk"):
        load_config(config)


# Files whose name checks wait for a one-line change by their owners (see docs/models.md).
_NAME_CHECK = re.compile(
    r"""\.backend\s*(==|!=|\bin\b|\bnot in\b)|\.backend\.startswith|"""
    r"""\bBACKEND\s*=\s*["']""")


def test_no_code_outside_the_registry_branches_on_a_backend_name() -> None:
    offenders = set()
    for folder in ("core", "tui"):
        for path in (ROOT / folder).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            if relative.startswith("core/config/"):
                continue  # the registry and the declarations themselves
            if _NAME_CHECK.search(path.read_text(encoding="utf-8")):
                offenders.add(relative)

    assert offenders == set(), sorted(offenders)
