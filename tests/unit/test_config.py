"""Run configuration: embedded defaults, the TOML contract, overrides, and one clear error per
mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from visinstruct.core.config import Config, load_config, parse_override
from visinstruct.core.errors import ConfigError, ExitCode

SCRIPTED_MODEL = '[models.fake]\nbackend = "scripted"\n'


def write_config(folder: Path, text: str, name: str = "run.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path | None, overrides: dict[str, object] | None = None) -> str:
    """Load and return the ConfigError's message, checking it is one line."""
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    message = str(caught.value)
    assert "\n" not in message
    assert caught.value.exit_code == ExitCode.BAD_INPUT
    return message


def test_embedded_defaults_load_and_validate() -> None:
    config = load_config(None)
    assert isinstance(config, Config)
    assert config.db == Path("visinstruct.db")
    assert config.generation.model == "tiny" and config.judge.model == "tiny"
    assert config.models["tiny"].backend == "local"
    assert config.judge.threshold == 7
    for path in (config.source.coco_captions, config.source.coco_instances, config.source.baseline):
        assert path is not None and Path(path).is_file()


def test_the_design_example_loads(tmp_path: Path) -> None:
    (tmp_path / "captions.json").write_text("{}")
    path = write_config(tmp_path, """
db = "out/visinstruct.db"
[source]
coco_captions = "captions.json"
limit = 5
[generation]
model = "mixtral"
tasks = ["conversation", "detail"]
[judge]
model = "mixtral"
threshold = 8
[evaluation]
model = "claude"
sample = 20
[models.mixtral]
backend = "sagemaker"
endpoints = ["mixtral-a", "mixtral-b"]
schema = "tgi"
max_in_flight = 64
""")
    config = load_config(path)
    assert config.source.limit == 5
    assert config.generation.tasks == ("conversation", "detail")
    assert config.judge.threshold == 8.0
    assert config.models["mixtral"].endpoints == ("mixtral-a", "mixtral-b")
    assert config.models["mixtral"].max_in_flight == 64
    assert config.evaluation.sample == 20
    assert config.origin == str(path)


def test_unknown_key_suggests_the_nearest_valid_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[judge]\ntreshold = 7\n")
    message = config_error(path)
    assert str(path) in message
    assert "treshold" in message and "threshold" in message.replace("treshold", "")


def test_unknown_model_key_suggests_the_nearest_valid_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[models.m]\nbackend = "sagemaker"\nendpoint = ["a"]\n')
    message = config_error(path)
    assert "endpoint" in message and "endpoints" in message


def test_unknown_section_is_named(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[judgement]\nthreshold = 7\n")
    message = config_error(path)
    assert "judgement" in message and "'judge'" in message


def test_missing_config_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "run.toml"
    message = config_error(missing)
    assert str(missing) in message and "not found" in message


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[judge\nthreshold = 7\n")
    assert str(path) in config_error(path)


def test_stage_model_without_a_definition_is_named(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[generation]\nmodel = "mixtral"\n')
    message = config_error(path)
    assert "mixtral" in message and "[models.mixtral]" in message and "[generation]" in message


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[source]\nlimit = "ten"\n', "limit"),
        ("[source]\nlimit = 2.5\n", "limit"),
        ('[judge]\nthreshold = "high"\n', "threshold"),
        ("[judge]\nthreshold = true\n", "threshold"),
        ("[generation]\ntasks = 3\n", "tasks"),
        ("[source]\ncoco_captions = 5\n", "coco_captions"),
        ("db = 5\n", "db"),
        ("judge = 7\n", "judge"),
        ('[models.fake]\nbackend = "scripted"\nmax_in_flight = "many"\n', "max_in_flight"),
        ('[models.fake]\nbackend = "scripted"\nstream = "yes"\n', "stream"),
    ],
)
def test_wrong_types_are_refused(tmp_path: Path, text: str, named: str) -> None:
    path = write_config(tmp_path, text)
    message = config_error(path)
    assert named in message and str(path) in message


@pytest.mark.parametrize("threshold", [0, 11, -3, 10.5])
def test_threshold_out_of_range(tmp_path: Path, threshold: float) -> None:
    path = write_config(tmp_path, f"[judge]\nthreshold = {threshold}\n")
    assert "threshold" in config_error(path)


@pytest.mark.parametrize("temperature", [0, -0.1, 2.5])
def test_evaluation_temperature_out_of_range(tmp_path: Path, temperature: float) -> None:
    path = write_config(tmp_path, f"[evaluation]\ntemperature = {temperature}\n")
    assert "[evaluation].temperature" in config_error(path)


@pytest.mark.parametrize("threshold", [1, 10, 7.5])
def test_threshold_in_range(tmp_path: Path, threshold: float) -> None:
    path = write_config(tmp_path, f"[judge]\nthreshold = {threshold}\n")
    assert load_config(path).judge.threshold == threshold


def test_unknown_task_is_named(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[generation]\ntasks = ["conversation", "poetry"]\n')
    assert "poetry" in config_error(path)


def test_unknown_backend_is_named(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[generation]\nmodel = "m"\n[models.m]\nbackend = "ollama"\n')
    assert "ollama" in config_error(path)


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "captions.json").write_text("{}")
    (folder / "images").mkdir()
    (folder / "script.json").write_text('{"rules": []}')
    path = write_config(folder, (
        'db = "stores/run.db"\n'
        '[source]\ncoco_captions = "data/captions.json"\nimages_dir = "images"\n'
        '[generation]\nmodel = "fake"\n[judge]\nmodel = "fake"\n'
        '[models.fake]\nbackend = "scripted"\nscript = "script.json"\n'
    ))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path)
    assert config.db == folder / "stores" / "run.db"
    assert config.source.coco_captions == folder / "data" / "captions.json"
    assert config.source.images_dir == folder / "images"
    assert Path(config.models["fake"].script) == folder / "script.json"


def test_relative_gguf_resolves_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "model.gguf").write_bytes(b"GGUF" + bytes(28))
    path = write_config(folder, (
        '[generation]\nmodel = "mine"\n[judge]\nmodel = "mine"\n'
        '[models.mine]\nbackend = "local"\ngguf = "model.gguf"\n'
    ))
    monkeypatch.chdir(tmp_path)
    assert Path(load_config(path).models["mine"].gguf) == folder / "model.gguf"


def test_missing_source_file_is_named(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[source]\ncoco_captions = "gone.json"\n')
    message = config_error(path)
    assert "coco_captions" in message and str(tmp_path / "gone.json") in message


def local_model_config(folder: Path, gguf: Path) -> Path:
    return write_config(folder, (
        '[generation]\nmodel = "mine"\n[judge]\nmodel = "mine"\n'
        f'[models.mine]\nbackend = "local"\ngguf = "{gguf}"\n'
    ))


def test_local_model_with_missing_gguf(tmp_path: Path) -> None:
    missing = tmp_path / "absent.gguf"
    message = config_error(local_model_config(tmp_path, missing))
    assert str(missing) in message and "[models.mine]" in message


def test_local_model_with_a_file_that_is_not_gguf(tmp_path: Path) -> None:
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04")
    message = config_error(local_model_config(tmp_path, fake))
    assert str(fake) in message and "GGUF" in message


def test_local_model_with_a_gguf_file_loads(tmp_path: Path) -> None:
    real = tmp_path / "real.gguf"
    real.write_bytes(b"GGUF" + bytes(60))
    assert load_config(local_model_config(tmp_path, real)).models["mine"].gguf == str(real)


def test_sagemaker_model_without_endpoints(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[generation]\nmodel = "mixtral"\n'
                                  '[models.mixtral]\nbackend = "sagemaker"\n')
    message = config_error(path)
    assert "[models.mixtral]" in message and "endpoints" in message


def test_sagemaker_with_unknown_schema(tmp_path: Path) -> None:
    path = write_config(tmp_path, (
        '[judge]\nmodel = "mixtral"\n[models.mixtral]\nbackend = "sagemaker"\n'
        'endpoints = ["a"]\nschema = "vllm"\n'
    ))
    assert "schema" in config_error(path)


def test_evaluation_model_is_checked_before_any_work(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[evaluation]\nmodel = "judge2"\n'
                                  '[models.judge2]\nbackend = "bedrock"\n')
    message = config_error(path)
    assert "[models.judge2]" in message and "model_id" in message


def test_set_override_changes_the_threshold(tmp_path: Path) -> None:
    key, value = parse_override("judge.threshold=8")
    assert (key, value) == ("judge.threshold", 8)
    assert load_config(None, {key: value}).judge.threshold == 8.0
    path = write_config(tmp_path, "[judge]\nthreshold = 6\n")
    assert load_config(path, dict([parse_override("judge.threshold=8.5")])).judge.threshold == 8.5


def test_set_override_of_lists_and_models() -> None:
    overrides = dict([parse_override('generation.tasks=["detail"]'),
                      parse_override("models.claude.max_in_flight=3"),
                      parse_override("source.limit=4")])
    config = load_config(None, overrides)
    assert config.generation.tasks == ("detail",)
    assert config.models["claude"].max_in_flight == 3
    assert config.source.limit == 4


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("judge.threshold", "judge.threshold"),       # no '='
        ("judge.threshold=high", "judge.threshold"),  # not a number
        ("judge.threshold=11", "threshold"),          # out of range
        ("judge.treshold=8", "threshold"),            # misspelt key: suggests the right one
        ("jugde.threshold=8", "jugde"),               # unknown section
        ("models.nobody.gguf=x", "nobody"),           # unknown model
        ("db=5", "db"),                               # not a path
        ("db=", "db"),                                # empty path
    ],
)
def test_bad_set_override(override: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, dict([parse_override(override)]))
    assert named in str(caught.value) and "\n" not in str(caught.value)


def test_misspelt_override_key_suggests_the_valid_one() -> None:
    with pytest.raises(ConfigError, match="did you mean 'threshold'"):
        load_config(None, dict([parse_override("judge.treshold=8")]))
