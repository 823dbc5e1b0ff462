"""The dataset card: its YAML header and sections from the facts the export gathered."""

from __future__ import annotations

from collections import Counter

import pytest

from visinstruct.core.export.card import CardFacts, CardModel, dataset_card, size_category
from visinstruct.core.export.mix import MixTally


def facts(**changes: object) -> CardFacts:
    base: dict[str, object] = {
        "command": "visinstruct export --out x.json --card CARD.md", "records": 3,
        "ours_records": 3, "ours_pairs": 7, "threshold": 7.0,
        "models": (CardModel("generation", "mixtral", "mistralai/Mixtral-8x7B", "apache-2.0"),
                   CardModel("judge", "claude", "anthropic.claude-3", "")),
        "pair_counts": {"generated": 10, "gated": 1, "judged": 9, "kept": 7}}
    base.update(changes)
    return CardFacts(**base)  # type: ignore[arg-type]


def header(text: str) -> str:
    return text.split("---\n")[1]


def test_our_records_alone_carry_the_generation_models_licence() -> None:
    text = dataset_card(facts())
    assert "license: apache-2.0\n" in header(text)
    assert "- n<1K" in header(text) and "- original" in header(text)
    assert "| generation | mixtral | mistralai/Mixtral-8x7B | apache-2.0 | no |" in text
    assert "| judge | claude | anthropic.claude-3 | unknown | no |" in text
    assert "from captions, boxes and facts, without seeing the picture" in text
    assert "Pairs generated 10, dropped by a quality gate 1, judged 9, kept 7" in text
    assert "Not measured" in text and text.rstrip().endswith("```")


def test_a_mix_of_licences_is_other_and_each_part_has_its_own() -> None:
    tally = MixTally(read=10, kept=Counter({"gqa": 4, "aokvqa": 2}),
                     removed=Counter({"llava_instruct": 3, "sharegpt": 1}),
                     added=Counter({"detail": 3}), ours_pairs=7)
    text = dataset_card(facts(records=9, tally=tally))
    assert "license: other\nlicense_name: mixed\n" in header(text)
    assert "extended|liuhaotian/LLaVA-Instruct-150K" in header(text)
    assert "| gqa | GQA | people | 4 | CC-BY-4.0 |" in text
    assert "| aokvqa | A-OKVQA multiple choice (COCO) | people | 2 | unknown |" in text
    assert "llava_instruct 3, sharegpt 1 (of 10 records read)" in text
    assert 'pretty_name: "LLaVA-1.5 training mix without GPT-made records' in header(text)


def test_the_comparison_gives_the_relative_score_with_its_interval() -> None:
    text = dataset_card(facts(comparison={"relative_score": 87.25, "ci_low": 80.0,
                                          "ci_high": 93.5, "n": 200, "model": "claude"}))
    assert "Relative score 87.2% of the GPT-4 answers (95% interval 80.0-93.5), over 200 " \
           "compared items, judged by claude" in text


@pytest.mark.parametrize(("records", "bucket"), [
    (0, "n<1K"), (999, "n<1K"), (1_000, "1K<n<10K"), (665_000, "100K<n<1M"),
    (1_000_000, "1M<n<10M")])
def test_size_categories_follow_hugging_faces_buckets(records: int, bucket: str) -> None:
    assert size_category(records) == bucket


def test_the_card_says_which_models_saw_the_picture_and_claims_nothing_else() -> None:
    """What made the data is stated from the ledger, never assumed (no "open models" claim)."""
    seeing = (CardModel("generation", "pixtral", "mistral.pixtral-large", "mrl",
                        saw_pictures=True),
              CardModel("judge", "claude", "anthropic.claude-3", "", saw_pictures=True))
    tally = MixTally(read=2, kept=Counter({"gqa": 1}), removed=Counter({"llava_instruct": 1}),
                     added=Counter({"detail": 1}), ours_pairs=1)
    text = dataset_card(facts(models=seeing, tally=tally))
    assert "| generation | pixtral | mistral.pixtral-large | mrl | yes |" in text
    assert "| judge | claude | anthropic.claude-3 | unknown | yes |" in text
    assert "and by pixtral with the picture too" in text
    assert "open models" not in text
    assert 'replaced by records made by the models listed under "How our records were made"' \
        in text
