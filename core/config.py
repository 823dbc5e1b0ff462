"""Run configuration: the TOML contract in DESIGN.md, embedded defaults, CLI overrides, validation."""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from visinstruct.core.errors import ConfigError
from visinstruct.core.records import ALL_TASKS, TASKS

BACKENDS = ("sagemaker", "bedrock", "bedrock-batch", "openai", "local", "scripted")
SAGEMAKER_SCHEMAS = ("tgi", "lmi", "messages")
BATCH_FAMILIES = ("anthropic", "mistral", "meta")  # model providers whose batch bodies we write
# How an OpenAI-compatible request asks for JSON; "auto" finds the form each server takes,
# "response_format" is the older name of "json_schema".
OPENAI_JSON_MODES = ("auto", "json_schema", "json_object", "guided_json", "none",
                     "response_format")
JUDGE_COMBINE = ("mean", "min")
UNGROUNDED_ACTIONS = ("flag", "drop", "off")


@dataclass(frozen=True)
class SourceConfig:
    """Where the images, captions, boxes and baseline come from."""

    coco_captions: Path | None = None
    coco_instances: Path | None = None
    baseline: Path | None = None
    images_dir: Path | None = None
    limit: int = 0
    gqa_scene_graphs: Path | None = None
    gqa_questions: Path | None = None
    vqa_questions: Path | None = None
    vqa_annotations: Path | None = None
    gqa_images_dir: Path | None = None


@dataclass(frozen=True)
class GenerationConfig:
    """Which model writes the data, for which tasks, with which sampling."""

    model: str = "tiny"
    tasks: tuple[str, ...] = TASKS
    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.9
    max_pairs: int = 10      # pairs kept from one reply; a runaway reply is not one huge record


@dataclass(frozen=True)
class JudgeConfig:
    """Which model rates the pairs and the score a pair needs to be kept."""

    model: str = "tiny"
    threshold: float = 7
    max_tokens: int = 256
    temperature: float = 0.2
    models: tuple[str, ...] = ()   # a panel: every pair scored by each, then combined
    combine: str = "mean"          # mean | min: how a panel's scores become one

    @property
    def panel(self) -> tuple[str, ...]:
        """The judge models: `models` when set, else `model` alone."""
        return self.models or (self.model,)

    @property
    def identity(self) -> str:
        """The model name judgements are stored under: the one judge's, or the panel's."""
        panel = self.panel
        return panel[0] if len(panel) == 1 else f"panel:{self.combine}:{'+'.join(panel)}"


@dataclass(frozen=True)
class EvaluationConfig:
    """Which model compares our data with the baseline, on how many images."""

    model: str = "claude"
    sample: int = 200
    seed: int = 0
    max_tokens: int = 512
    temperature: float = 0.2


@dataclass(frozen=True)
class GatesConfig:
    """The quality gates (core/text/gates.py): each rule on or off, with its threshold."""

    cut_off: bool = True
    prompt_copy: bool = True
    prompt_copy_words: int = 8          # this many prompt words in a row make a copy
    same_as_question: bool = True
    placeholder: bool = True
    refusal: bool = True
    duplicate: bool = True
    duplicate_similarity: float = 0.8   # word-shingle Jaccard to an earlier pair of the image
    template_images: int = 5            # a pair word for word on this many images is flagged
    ungrounded_object: str = "flag"     # flag | drop | off


@dataclass(frozen=True)
class BudgetConfig:
    """Spending limit; 0 means none."""

    max_usd: float = 0.0


@dataclass(frozen=True)
class DownloadConfig:
    """Where `prepare --download` fetches from and to."""

    coco_annotations_url: str = (
        "http://images.cocodataset.org/annotations/annotations_trainval2017.zip"
    )
    mix665k_url: str = (
        "https://huggingface.co/datasets/liuhaotian/LLaVA-Instruct-150K/resolve/main/"
        "llava_v1_5_mix665k.json"
    )
    gqa_scene_graphs_url: str = "https://downloads.cs.stanford.edu/nlp/data/gqa/sceneGraphs.zip"
    gqa_questions_url: str = "https://downloads.cs.stanford.edu/nlp/data/gqa/questions1.2.zip"
    vqa_questions_url: str = (
        "https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa/v2_Questions_Train_mscoco.zip"
    )
    vqa_annotations_url: str = (
        "https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa/v2_Annotations_Train_mscoco.zip"
    )
    data_dir: Path = Path("data")


@dataclass(frozen=True)
class ModelConfig:
    """One named model: a backend and its settings (keys not used by a backend stay default)."""

    name: str
    backend: str
    endpoints: tuple[str, ...] = ()
    schema: str = "tgi"
    region: str = "us-east-1"
    max_in_flight: int = 8
    model_id: str = ""
    api: str = "invoke"
    base_url: str = ""
    base_urls: tuple[str, ...] = ()
    api_key_env: str = "OPENAI_API_KEY"
    model: str = ""
    json_mode: str = "auto"
    gguf: str = ""
    n_ctx: int = 4096
    n_threads: int = 0
    contexts: int = 1
    script: str = ""
    stream: bool = False
    read_timeout: float = 75.0
    attempts: int = 4
    probe_seconds: float = 30.0
    instances: int = 1
    price_per_instance_hour: float = 0.0
    price_in_per_million: float = 0.0
    price_out_per_million: float = 0.0
    # bedrock-batch: where records and outputs go, the role Bedrock uses, and job sizes.
    s3_uri: str = ""
    role_arn: str = ""
    min_records: int = 100
    max_records_per_job: int = 50_000
    poll_seconds: float = 60.0
    timeout_hours: int = 24
    on_demand_remainder: bool = True


@dataclass(frozen=True)
class Config:
    """A whole, validated run configuration."""

    db: Path = Path("visinstruct.db")
    source: SourceConfig = field(default_factory=SourceConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    gates: GatesConfig = field(default_factory=GatesConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    models: Mapping[str, ModelConfig] = field(default_factory=dict)
    origin: str = "<embedded defaults>"

    def model(self, name: str) -> ModelConfig:
        """The model called `name` (validation guarantees the stages' models exist)."""
        return self.models[name]


_SECTIONS: dict[str, type] = {
    "source": SourceConfig,
    "generation": GenerationConfig,
    "judge": JudgeConfig,
    "evaluation": EvaluationConfig,
    "budget": BudgetConfig,
    "gates": GatesConfig,
    "download": DownloadConfig,
}
_TOP_KEYS = ("db", "models", *_SECTIONS)
_PATH_KEYS = {"coco_captions", "coco_instances", "baseline", "images_dir", "data_dir",
              "gqa_scene_graphs", "gqa_questions", "vqa_questions", "vqa_annotations",
              "gqa_images_dir"}
# Model settings that hold a file path but stay strings (empty means "none" / "the bundled one").
_MODEL_PATH_KEYS = {"gguf", "script"}


def default_models() -> dict[str, ModelConfig]:
    """The models every config knows without defining them."""
    return {
        "tiny": ModelConfig(name="tiny", backend="local", max_in_flight=1),
        "claude": ModelConfig(
            name="claude",
            backend="bedrock",
            model_id="anthropic.claude-3-5-sonnet-20240620-v1:0",
            max_in_flight=8,
            price_in_per_million=3.0,
            price_out_per_million=15.0,
        ),
    }


def default_config() -> Config:
    """The embedded defaults: bundled sample data, the local model, ./visinstruct.db."""
    from visinstruct.dataset import sample

    return Config(
        source=SourceConfig(
            coco_captions=sample.captions_path(),
            coco_instances=sample.instances_path(),
            baseline=sample.baseline_path(),
        ),
        models=default_models(),
    )


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
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
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
    if isinstance(current, bool):
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
                f"{origin}: [models.{name}] needs backend = one of {', '.join(BACKENDS)}"
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


def validate(config: Config) -> None:
    """Check everything that can be checked before any work starts."""
    origin = config.origin
    src = config.source
    if src.limit < 0:
        raise ConfigError(f"{origin}: [source].limit must be 0 (every image) or more")
    for key in ("coco_captions", "coco_instances", "baseline"):
        path = getattr(src, key)
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{origin}: [source].{key} file not found: {path}")
    for key in ("images_dir", "gqa_images_dir"):
        folder = getattr(src, key)
        if folder is not None and not Path(folder).is_dir():
            raise ConfigError(f"{origin}: [source].{key} is not a directory: {folder}")
    validate_fact_sources(src, origin)
    bad_tasks = [t for t in config.generation.tasks if t not in ALL_TASKS]
    if bad_tasks or not config.generation.tasks:
        raise ConfigError(
            f"{origin}: [generation].tasks must be a non-empty list of {', '.join(ALL_TASKS)}"
            + (f"; unknown: {', '.join(bad_tasks)}" if bad_tasks else "")
        )
    if not 1 <= config.generation.max_pairs <= 100:
        raise ConfigError(f"{origin}: [generation].max_pairs must be between 1 and 100, "
                          f"got {config.generation.max_pairs}")
    if not 1 <= config.judge.threshold <= 10:
        raise ConfigError(f"{origin}: [judge].threshold must be between 1 and 10 (scores are 1..10)")
    if config.evaluation.sample < 0:
        raise ConfigError(f"{origin}: [evaluation].sample must be 0 or more")
    if not 0 < config.evaluation.temperature <= 2:
        raise ConfigError(f"{origin}: [evaluation].temperature must be above 0 and at most 2")
    if config.budget.max_usd < 0:
        raise ConfigError(f"{origin}: [budget].max_usd must be 0 (no limit) or more")
    _validate_judge(config)
    _validate_gates(config.gates, origin)
    for stage in ("generation", "judge", "evaluation"):
        name = getattr(config, stage).model
        if name not in config.models:
            raise ConfigError(
                f"{origin}: [{stage}].model names {name!r} but no [models.{name}] is defined "
                f"(defined: {', '.join(sorted(config.models))})"
            )
    # The evaluation model too: `evaluate` should not find a broken model after the run's work.
    for stage in ("generation", "judge", "evaluation"):
        _validate_model(config.models[getattr(config, stage).model], origin)
    for name in config.judge.models:
        _validate_model(config.models[name], origin)
    for model in config.models.values():
        if model.backend not in BACKENDS:
            raise ConfigError(
                f"{origin}: [models.{model.name}].backend {model.backend!r} is not one of "
                f"{', '.join(BACKENDS)}"
            )
    check_ranges(config)


@dataclass(frozen=True)
class _Range:
    """Allowed values of a numeric key: low..high, with `above` meaning strictly above low."""

    low: float | None = 0
    high: float | None = None
    above: bool = False

    def allows(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            return False
        return self.high is None or value <= self.high

    def __str__(self) -> str:
        low = "" if self.low is None else f"{'above' if self.above else 'at least'} {self.low:g}"
        high = "" if self.high is None else f"at most {self.high:g}"
        return " and ".join(part for part in (low, high) if part) or "any number"


# A numeric key not named here must be 0 or more (counts, sizes, prices, seeds, seconds).
_RANGES: dict[str, _Range] = {
    "max_tokens": _Range(1),
    "temperature": _Range(0, 2),
    "top_p": _Range(0, 1, above=True),
    "threshold": _Range(1, 10),
    "max_in_flight": _Range(1),
    "attempts": _Range(1),
    "n_ctx": _Range(1),
    "contexts": _Range(1),
    "instances": _Range(1),
    "read_timeout": _Range(0, above=True),
    "probe_seconds": _Range(0, above=True),
}


def check_ranges(config: Config) -> None:
    """Refuse any numeric key outside its range, naming the key and the allowed range."""
    tables: list[tuple[str, Any]] = [(f"[{name}]", getattr(config, name)) for name in _SECTIONS]
    tables += [(f"[models.{name}]", model) for name, model in config.models.items()]
    for where, table in tables:
        for key in table.__dataclass_fields__:
            value = getattr(table, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            allowed = _RANGES.get(key, _Range())
            if not math.isfinite(value) or not allowed.allows(value):
                raise ConfigError(
                    f"{config.origin}: {where}.{key} must be {allowed}, got {value!r}")


def _validate_judge(config: Config) -> None:
    origin, judge = config.origin, config.judge
    missing = [name for name in judge.models if name not in config.models]
    if missing:
        raise ConfigError(
            f"{origin}: [judge].models names {', '.join(map(repr, missing))} but no such "
            f"[models.NAME] is defined (defined: {', '.join(sorted(config.models))})")
    if len(set(judge.models)) != len(judge.models):
        raise ConfigError(f"{origin}: [judge].models names a model twice; list each judge once")
    batch = [name for name in judge.models
             if config.models[name].backend == "bedrock-batch"]
    if batch:
        raise ConfigError(
            f"{origin}: [judge].models names {', '.join(map(repr, batch))}, a bedrock-batch "
            "model; a judge panel runs online: use one batch judge ([judge].model) or "
            "online panel members")
    if judge.combine not in JUDGE_COMBINE:
        raise ConfigError(f"{origin}: [judge].combine must be one of {', '.join(JUDGE_COMBINE)}, "
                          f"got {judge.combine!r}")


def _validate_gates(gates: GatesConfig, origin: str) -> None:
    if gates.prompt_copy_words < 3:
        raise ConfigError(f"{origin}: [gates].prompt_copy_words must be 3 or more (default 8); "
                          "fewer words in a row are common phrases, not copies")
    if not 0 < gates.duplicate_similarity <= 1:
        raise ConfigError(f"{origin}: [gates].duplicate_similarity must be above 0 and at most 1 "
                          "(default 0.8)")
    if gates.template_images < 0 or gates.template_images == 1:
        raise ConfigError(f"{origin}: [gates].template_images must be 0 (off) or 2 or more "
                          "(default 5)")
    if gates.ungrounded_object not in UNGROUNDED_ACTIONS:
        raise ConfigError(f"{origin}: [gates].ungrounded_object must be one of "
                          f"{', '.join(map(repr, UNGROUNDED_ACTIONS))}, got {gates.ungrounded_object!r}")


def validate_fact_sources(src: SourceConfig, origin: str) -> None:
    """The GQA and VQAv2 files exist, and come with the files they need."""
    for key in ("gqa_scene_graphs", "vqa_questions", "vqa_annotations"):
        path = getattr(src, key)
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{origin}: [source].{key} file not found: {path}")
    # GQA's *_all_questions come as a folder of parts; a balanced file is one file.
    if src.gqa_questions is not None and not Path(src.gqa_questions).exists():
        raise ConfigError(f"{origin}: [source].gqa_questions not found: {src.gqa_questions}")
    if src.gqa_questions is not None and src.gqa_scene_graphs is None:
        raise ConfigError(f"{origin}: [source].gqa_questions needs [source].gqa_scene_graphs "
                          "(GQA images come from the scene graphs)")
    if (src.vqa_questions is None) != (src.vqa_annotations is None):
        raise ConfigError(f"{origin}: [source].vqa_questions and [source].vqa_annotations go "
                          "together (the answers are in the annotations file); give both")


def _validate_model(model: ModelConfig, origin: str) -> None:
    where = f"{origin}: [models.{model.name}]"
    if model.backend not in BACKENDS:
        raise ConfigError(f"{where}.backend {model.backend!r} is not one of {', '.join(BACKENDS)}")
    if model.max_in_flight < 1:
        raise ConfigError(f"{where}.max_in_flight must be at least 1")
    if model.attempts < 1:
        raise ConfigError(f"{where}.attempts must be at least 1")
    if model.backend == "sagemaker":
        if not model.endpoints:
            raise ConfigError(f"{where} needs endpoints = [\"name\", ...] for backend sagemaker")
        if model.schema not in SAGEMAKER_SCHEMAS:
            raise ConfigError(f"{where}.schema must be one of {', '.join(SAGEMAKER_SCHEMAS)}")
    elif model.backend == "bedrock":
        if not model.model_id:
            raise ConfigError(f"{where} needs model_id for backend bedrock")
        if model.api not in ("invoke", "converse"):
            raise ConfigError(f"{where}.api must be invoke or converse")
    elif model.backend == "bedrock-batch":
        _validate_batch_model(model, where)
    elif model.backend == "openai":
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
    elif model.backend == "local" and model.gguf:
        check_gguf(Path(model.gguf), where)
    elif model.backend == "scripted" and model.script and not Path(model.script).is_file():
        raise ConfigError(f"{where}.script file not found: {model.script}")


def _validate_batch_model(model: ModelConfig, where: str) -> None:
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


def batch_family(model_id: str) -> str:
    """The provider of a Bedrock model id ("us.anthropic.claude-..." -> "anthropic"), or ""."""
    parts = model_id.split(".")
    # Cross-region inference profiles put a geography first.
    provider = parts[1] if len(parts) > 2 and parts[0] in ("us", "eu", "apac", "global") else parts[0]
    return provider if provider in BATCH_FAMILIES else ""


def check_gguf(path: Path, where: str) -> None:
    """Refuse a GGUF path that is missing or is not a GGUF file (checked by its magic bytes)."""
    if not path.is_file():
        raise ConfigError(f"{where}.gguf file not found: {path}")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise ConfigError(f"{where}.gguf is not a GGUF model file: {path}")
