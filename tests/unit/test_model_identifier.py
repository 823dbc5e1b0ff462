"""What a recorded [models.X] table runs, as the jsonl/hf records and the card name it."""

from __future__ import annotations

from visinstruct.core.store.provenance import model_identifier


def test_a_named_model_is_named_by_its_own_key() -> None:
    assert model_identifier({"backend": "bedrock", "model_id": "mistral.pixtral"}) == \
        "mistral.pixtral"
    assert model_identifier({"backend": "openai", "model": "qwen2.5-vl"}) == "qwen2.5-vl"
    assert model_identifier({"backend": "sagemaker", "endpoints": ["a", "b"]}) == "endpoints a, b"


def test_a_table_naming_no_model_says_what_its_backend_runs_by_default() -> None:
    assert model_identifier({"backend": "local"}) == "the bundled GGUF (Gemma 3 270M)"
    assert model_identifier({"backend": "local", "gguf": "m.gguf"}) == "m.gguf"
    assert model_identifier({"backend": "bedrock"}) == ""


def test_a_backend_no_longer_installed_is_no_error() -> None:
    # A run recorded a plugin's backend that is gone now: the record still reads.
    assert model_identifier({"backend": "gone-plugin"}) == ""
    assert model_identifier({}) == ""
