"""`[models.X] vision` and `image_max_side`: defaults by model id, refusals that name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from visinstruct.core.config import ModelConfig, load_config, sees_images
from visinstruct.core.errors import ConfigError, ExitCode


def load_model(tmp_path: Path, body: str, overrides: dict[str, object] | None = None
               ) -> ModelConfig:
    path = tmp_path / "run.toml"
    path.write_text(f'[generation]\nmodel = "m"\n[models.m]\n{body}\n', encoding="utf-8")
    return load_config(path, overrides).model("m")


def refusal(tmp_path: Path, body: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_model(tmp_path, body)
    assert caught.value.exit_code == ExitCode.BAD_INPUT
    assert "\n" not in str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize(("model_id", "api", "sees"), [
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", "invoke", True),
    ("us.anthropic.claude-3-haiku-20240307-v1:0", "converse", True),
    ("us.anthropic.claude-sonnet-4-20250514-v1:0", "invoke", True),
    ("anthropic.claude-opus-4-1-20250805-v1:0", "converse", True),
    ("anthropic.claude-v2:1", "invoke", False),
    ("amazon.nova-lite-v1:0", "converse", True),
    ("us.amazon.nova-pro-v1:0", "converse", True),
    ("amazon.nova-micro-v1:0", "converse", False),
    ("us.meta.llama3-2-11b-instruct-v1:0", "converse", True),
    ("us.meta.llama3-2-90b-instruct-v1:0", "converse", True),
    ("us.meta.llama3-2-3b-instruct-v1:0", "converse", False),
    ("meta.llama3-70b-instruct-v1:0", "converse", False),
    ("us.mistral.pixtral-large-2502-v1:0", "converse", True),
    ("mistral.mixtral-8x7b-instruct-v0:1", "converse", False),
    # InvokeModel bodies carry pictures for Anthropic models only: the default stays false.
    ("us.meta.llama3-2-11b-instruct-v1:0", "invoke", False),
])
def test_bedrock_models_see_by_their_model_id(tmp_path: Path, model_id: str, api: str,
                                              sees: bool) -> None:
    model = load_model(tmp_path, f'backend = "bedrock"\nmodel_id = "{model_id}"\napi = "{api}"')
    assert model.vision is None
    assert sees_images(model) is sees


def test_other_backends_are_blind_unless_told(tmp_path: Path) -> None:
    served = 'backend = "openai"\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "qwen2.5-vl"'
    assert sees_images(load_model(tmp_path, served)) is False
    assert sees_images(load_model(tmp_path, served + "\nvision = true")) is True
    assert sees_images(load_model(tmp_path, served, {"models.m.vision": True})) is True
    endpoint = 'backend = "sagemaker"\nendpoints = ["vlm"]\nschema = "messages"'
    assert sees_images(load_model(tmp_path, endpoint)) is False
    assert sees_images(load_model(tmp_path, endpoint + "\nvision = true")) is True
    claude = ('backend = "bedrock"\nmodel_id = "anthropic.claude-3-haiku-20240307-v1:0"\n'
              "vision = false")
    assert sees_images(load_model(tmp_path, claude)) is False


def test_the_embedded_defaults_are_unchanged() -> None:
    config = load_config(None)
    assert sees_images(config.model("tiny")) is False  # the bundled local model
    assert sees_images(config.model("claude")) is True  # the evaluator, as before
    assert config.model("tiny").image_max_side == 1024


@pytest.mark.parametrize(("body", "fix"), [
    ('backend = "sagemaker"\nendpoints = ["e"]\nvision = true', 'schema = "messages"'),
    ('backend = "sagemaker"\nendpoints = ["e"]\nschema = "lmi"\nvision = true',
     'schema = "messages"'),
    ('backend = "bedrock"\nmodel_id = "us.meta.llama3-2-11b-instruct-v1:0"\nvision = true',
     'api = "converse"'),
    ('backend = "local"\nvision = true', "vision = false"),
    ('backend = "bedrock-batch"\nmodel_id = "us.meta.llama3-2-11b-instruct-v1:0"\n'
     's3_uri = "s3://b/p/"\nrole_arn = "arn:aws:iam::1:role/r"\nvision = true',
     "anthropic. model id"),
])
def test_vision_on_a_wire_that_cannot_carry_pictures_names_the_fix(tmp_path: Path, body: str,
                                                                   fix: str) -> None:
    message = refusal(tmp_path, body)
    assert "[models.m].vision = true" in message and fix in message


@pytest.mark.parametrize(("value", "allowed"), [
    ("63", True), ("4097", True), ("0", True), ('"big"', False), ("true", False)])
def test_image_max_side_is_a_whole_number_from_64_to_4096(tmp_path: Path, value: str,
                                                          allowed: bool) -> None:
    message = refusal(tmp_path, f'backend = "scripted"\nimage_max_side = {value}')
    assert "image_max_side" in message
    if allowed:
        assert "at least 64 and at most 4096" in message


def test_image_max_side_bounds_pass(tmp_path: Path) -> None:
    assert load_model(tmp_path, 'backend = "scripted"\nimage_max_side = 64').image_max_side == 64
    assert load_model(tmp_path, 'backend = "scripted"\nimage_max_side = 4096'
                      ).image_max_side == 4096


def test_vision_must_be_true_or_false(tmp_path: Path) -> None:
    message = refusal(tmp_path, 'backend = "scripted"\nvision = "yes"')
    assert "vision must be true or false" in message
