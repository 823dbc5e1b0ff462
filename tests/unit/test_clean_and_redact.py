"""Model text made storable and clean; secrets masked in every form an error may carry them."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from visinstruct.core.sanitize.clean import clean_pair_text, storable
from visinstruct.core.sanitize.redact import redact, redact_reply, redact_url, register_url
from visinstruct.core.text.parse_pairs import parse_pairs


def test_lone_surrogates_become_replacement_characters_and_pairs_join() -> None:
    assert storable("a\ud800b") == "a\ufffdb"
    assert storable("\ud83d\ude00") == "\U0001f600"
    assert storable("plain") == "plain"


@given(st.text(st.characters(blacklist_categories=())))
def test_cleaned_text_always_encodes_and_holds_no_token_or_control(text: str) -> None:
    cleaned = clean_pair_text(text)
    cleaned.encode("utf-8")
    assert "<image>" not in cleaned.lower()
    assert not any(ord(c) < 32 and c not in "\n\t" or 0x7F <= ord(c) <= 0x9F for c in cleaned)


def test_image_tokens_and_terminal_escapes_are_removed_whole() -> None:
    assert clean_pair_text("<image>\nWhat is <IMAGE> this \x1b[31mred\x1b[0m\x00 thing?") == (
        "What is this red thing?")


def test_a_detail_reply_shaped_as_pairs_is_parsed_not_kept_as_json() -> None:
    cut = '{"pairs": [{"question": "What is shown?", "answer": "A dog runs in a park. It is'
    parsed = parse_pairs(cut, "detail", description_request="Describe the image.")
    assert [p.answer for p in parsed.pairs] == ["A dog runs in a park."]
    short = json.dumps({"pairs": [{"question": "What?", "answer": "A dog."}]})
    parsed = parse_pairs(short, "detail", description_request="Describe the image.")
    assert parsed.pairs == () and "{" not in "".join(p.answer for p in parsed.pairs)


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"AWS_SESSION_TOKEN": "IQoJb3JpZ2luX2Vj/seeded+token==",
              "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzSEEDED",
              "MY_SERVICE_API_KEY": "sk-abcdefghijklmnop"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def test_environment_secrets_are_masked_as_is_quoted_and_json_escaped(
        secrets: dict[str, str]) -> None:
    token = secrets["AWS_SESSION_TOKEN"]
    text = (f"token {token} quoted IQoJb3JpZ2luX2Vj%2Fseeded%2Btoken%3D%3D escaped "
            f"{token.replace('/', chr(92) + '/')} key {secrets['MY_SERVICE_API_KEY']}")
    masked = redact(text)
    assert "seeded" not in masked and "sk-abc" not in masked
    assert masked.count("***") == 4


def test_header_values_key_ids_and_url_user_info_are_masked() -> None:
    echoed = json.dumps({"Authorization": "AWS4-HMAC-SHA256 Credential=AKIAABCDEFGHIJKLMNOP/x, "
                                          "Signature=abc", "X-Amz-Security-Token": "opaque-tok"})
    masked = redact(f"error: {echoed}; also Authorization: Bearer abc.def and "
                    "http://user:pw123456@host:8000/v1")
    assert "AKIA" not in masked and "opaque-tok" not in masked and "abc.def" not in masked
    assert "pw123456" not in masked and "http://***@host:8000/v1" in masked
    assert redact("ModelError (container status 500), HTTP 424: out of memory") == (
        "ModelError (container status 500), HTTP 424: out of memory")


def test_a_registered_url_password_is_masked_anywhere() -> None:
    register_url("http://reader:Sh0rtButSecret@example.test/v1")
    assert redact("echoed Sh0rtButSecret back") == "echoed *** back"
    assert redact_url("http://reader:Sh0rtButSecret@example.test/v1") == "http://example.test/v1"


def test_a_url_password_is_masked_decoded_encoded_and_inside_its_basic_token() -> None:
    register_url("http://viewer:p%40ss%2Fw0rd%20q@example.test/v1")
    basic = base64.b64encode(b"viewer:p@ss/w0rd q").decode()
    assert redact(f"got Basic {basic}") == "got Basic ***"
    for echoed in ("p@ss/w0rd q", "p%40ss%2Fw0rd%20q", "p%40ss%2fw0rd%20q", "p%40ss%2Fw0rd+q",
                   basic, basic.rstrip("="), "p@ss\\/w0rd q",
                   base64.b64encode(b"p@ss/w0rd q").decode()):
        assert redact(f"server said [{echoed}]") == "server said [***]", echoed
    assert redact("the viewer looks at a reader") == "the viewer looks at a reader"


@pytest.mark.parametrize("prose", ["A dog runs [1] in the park near a lake with trees.",
                                   "[A photo of] a dog running in the park near the lake."])
def test_prose_with_brackets_is_still_a_description(prose: str) -> None:
    parsed = parse_pairs(prose, "detail", description_request="Describe the image.")
    assert [p.answer for p in parsed.pairs] == [prose]


def test_a_reply_keeps_words_that_only_a_secret_looking_variable_holds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SORT_KEY", "elephants")  # named like a secret, never sent
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sent-with-every-call-42")
    register_url("http://viewer:r3ply-echoed-pw@example.test/v1")
    reply = "Two elephants; the server saw sk-sent-with-every-call-42 and r3ply-echoed-pw."
    assert redact_reply(reply) == "Two elephants; the server saw *** and ***."
    assert redact(reply) == "Two ***; the server saw *** and ***."


def test_a_reply_keeps_a_url_user_name_and_loses_a_password() -> None:
    """A user name alone is text (`git@`), a password is a secret, in a model's answer."""
    assert redact_reply("Clone ssh://git@example.org/repo.") == "Clone ssh://git@example.org/repo."
    assert redact_reply("Open http://ann:pw1234@example.org/") == "Open http://***@example.org/"
    assert redact("error from http://ann@example.org/") == "error from http://***@example.org/"
