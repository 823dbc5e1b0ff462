"""The [gates] section and the judge panel keys: defaults, the design's example, one clear
error each."""

from __future__ import annotations

from pathlib import Path

import pytest

from visinstruct.core.config import GatesConfig, load_config
from visinstruct.core.errors import ConfigError, ExitCode

FAKE = '[models.fake]\nbackend = "scripted"\n[models.other]\nbackend = "scripted"\n'


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "run.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert caught.value.exit_code == ExitCode.BAD_INPUT
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_every_gate_is_on_by_default_and_the_design_example_loads(tmp_path: Path) -> None:
    assert load_config(None).gates == GatesConfig()
    config = load(tmp_path, "[gates]\nprompt_copy_words = 8\nduplicate_similarity = 0.8\n"
                            'refusal = false\nungrounded_object = "drop"\n')
    gates = config.gates  # type: ignore[attr-defined]
    assert gates.prompt_copy_words == 8 and gates.duplicate_similarity == 0.8
    assert gates.refusal is False and gates.placeholder is True
    assert gates.ungrounded_object == "drop"


def test_an_unknown_gate_key_exits_2_naming_the_nearest(tmp_path: Path) -> None:
    message = error(tmp_path, "[gates]\nprompt_copy_word = 8\n")
    assert "[gates].prompt_copy_word" in message and "prompt_copy_words" in message


@pytest.mark.parametrize("line, key", [
    ("prompt_copy_words = 2", "prompt_copy_words"),
    ("duplicate_similarity = 1.5", "duplicate_similarity"),
    ("template_images = 1", "template_images"),
    ('ungrounded_object = "maybe"', "ungrounded_object"),
    ('ungrounded_object = "Drop"', "ungrounded_object"),
    ("repeated_sentence_similarity = 0", "repeated_sentence_similarity"),
    ('repeated_sentence = "no"', "repeated_sentence"),
    ('cut_off = "yes"', "cut_off"),
])
def test_a_bad_gate_value_names_its_key(tmp_path: Path, line: str, key: str) -> None:
    assert key in error(tmp_path, f"[gates]\n{line}\n")


def test_a_gate_can_be_set_from_the_command_line() -> None:
    config = load_config(None, {"gates.duplicate": False})
    assert config.gates.duplicate is False


def test_a_judge_panel_loads_and_the_single_judge_still_works(tmp_path: Path) -> None:
    config = load(tmp_path, FAKE + '[judge]\nmodels = ["fake", "other"]\ncombine = "min"\n')
    judge = config.judge  # type: ignore[attr-defined]
    assert judge.panel == ("fake", "other") and judge.identity == "panel:min:fake+other"
    single = load(tmp_path, FAKE + '[judge]\nmodel = "fake"\n').judge  # type: ignore[attr-defined]
    assert single.panel == ("fake",) and single.identity == "fake"


@pytest.mark.parametrize("judge, words", [
    ('models = ["fake", "nosuch"]', "nosuch"),
    ('models = ["fake", "fake"]', "twice"),
    ('models = ["fake", "other"]\ncombine = "median"', "combine"),
])
def test_a_bad_panel_is_refused(tmp_path: Path, judge: str, words: str) -> None:
    assert words in error(tmp_path, FAKE + f"[judge]\n{judge}\n")
