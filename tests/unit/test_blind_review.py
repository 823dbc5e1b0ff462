"""Blind review sampling and decisions on the hand-made analysis store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_analyze import build_hand_store
from visinstruct.core.analysis.agreement import blind_decisions
from visinstruct.core.errors import InputError
from visinstruct.core.review.blind import (
    blind_decision_count,
    blind_sample,
    record_blind_decision,
    stratum,
)
from visinstruct.core.store.database import Store

# The hand store's current judged pairs nobody decided on, by id: score.
CANDIDATES = {2: 8.0, 3: 5.0, 4: 7.5, 7: 7.0, 8: 6.0, 9: 9.0}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    made = build_hand_store(tmp_path / "hand.db")
    yield made
    made.close()


def test_stratum_is_the_score_rounded_down_within_1_to_10() -> None:
    assert [stratum(s) for s in (0.5, 1, 6.9, 7.5, 10, 11)] == [1, 1, 6, 7, 10, 10]


def test_sample_takes_one_pair_per_score_stratum_first(store: Store) -> None:
    # Strata 5, 6, 7 (two pairs), 8, 9: five pairs cover every stratum once.
    for seed in range(5):
        picked = [p.pair_id for p in blind_sample(store, 5, seed=seed)]
        assert len(picked) == 5
        assert {stratum(CANDIDATES[i]) for i in picked} == {5, 6, 7, 8, 9}
    every = blind_sample(store, 50, seed=0)
    assert sorted(p.pair_id for p in every) == sorted(CANDIDATES)
    # The unjudged pair 5, the human-rejected pair 6, the superseded pair 1 and the lab
    # trial's pair 10 are never drawn.
    first = next(p for p in every if p.pair_id == 2)
    assert (first.image.image_id, first.task, first.question) == (
        1, "conversation", "What is the dog doing?")
    assert first.image.captions == ("a scene",)


def test_decided_and_excluded_pairs_are_not_drawn_again(store: Store) -> None:
    record_blind_decision(store, 2, "accept")
    record_blind_decision(store, 3, "reject")
    left = {p.pair_id for p in blind_sample(store, 50, seed=0, exclude={9})}
    assert left == {4, 7, 8}
    assert blind_decision_count(store) == 2
    assert blind_decisions(store) == [(8.0, True), (5.0, False)]
    rows = store.query("SELECT pair_id, decision, blind FROM reviews WHERE blind = 1")
    assert [tuple(r) for r in rows] == [(2, "accept", 1), (3, "reject", 1)]


def test_bad_decisions_are_refused(store: Store) -> None:
    with pytest.raises(InputError, match="not one of"):
        record_blind_decision(store, 2, "maybe")
    with pytest.raises(InputError, match="pair 999"):
        record_blind_decision(store, 999, "accept")
