"""Checks of a loaded configuration: names, ranges, files and model settings, before any work."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visinstruct.core.config.backends import backend_spec
from visinstruct.core.config.sections import (
    _SECTIONS,
    JUDGE_COMBINE,
    UNGROUNDED_ACTIONS,
    Config,
    GatesConfig,
    ModelConfig,
    SourceConfig,
)
from visinstruct.core.errors import ConfigError
from visinstruct.core.records import ALL_TASKS


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
        raise ConfigError(
            f"{origin}: [judge].threshold must be between 1 and 10 (scores are 1..10)")
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
        backend_spec(model.backend, f"{origin}: [models.{model.name}]")
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
    # Seconds beyond a day are a typo, and sockets overflow on huge ones (1e10).
    "read_timeout": _Range(0, 86_400, above=True),
    "call_timeout": _Range(0, 86_400, above=True),
    "probe_seconds": _Range(0, 86_400, above=True),
    "poll_seconds": _Range(0, 86_400, above=True),
    # Dollars: no model costs a million per million tokens or per hour; far beyond overflows.
    "price_in_per_million": _Range(0, 1_000_000),
    "price_out_per_million": _Range(0, 1_000_000),
    "price_per_instance_hour": _Range(0, 1_000_000),
    # Pixels of a picture's longest side: below 64 nothing is seen, above 4096 no model takes.
    "image_max_side": _Range(64, 4096),
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
             if backend_spec(config.models[name].backend).runs_batch_jobs]
    if batch:
        raise ConfigError(
            f"{origin}: [judge].models names {', '.join(map(repr, batch))}, a "
            f"{config.models[batch[0]].backend} model; a judge panel runs online: use one batch "
            "judge ([judge].model) or online panel members")
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
    if not 0 < gates.repeated_sentence_similarity <= 1:
        raise ConfigError(f"{origin}: [gates].repeated_sentence_similarity must be above 0 and "
                          "at most 1 (default 0.6)")
    if gates.template_images < 0 or gates.template_images == 1:
        raise ConfigError(f"{origin}: [gates].template_images must be 0 (off) or 2 or more "
                          "(default 5)")
    if gates.ungrounded_object not in UNGROUNDED_ACTIONS:
        raise ConfigError(f"{origin}: [gates].ungrounded_object must be one of "
                          f"{', '.join(map(repr, UNGROUNDED_ACTIONS))}, "
                          f"got {gates.ungrounded_object!r}")


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
    spec = backend_spec(model.backend, where)
    if model.max_in_flight < 1:
        raise ConfigError(f"{where}.max_in_flight must be at least 1")
    if model.attempts < 1:
        raise ConfigError(f"{where}.attempts must be at least 1")
    spec.validate(model, where)
    refusal = spec.image_refusal(model) if model.vision else ""
    if refusal:
        raise ConfigError(f"{where}.vision = true, but this wire cannot carry pictures; "
                          f"set {refusal}")
