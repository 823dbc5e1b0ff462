"""Judge-human agreement figures against values worked out by hand."""

from __future__ import annotations

import math
import random

import pytest

from visinstruct.core.analysis.agreement import (
    NAMES,
    best_threshold,
    bootstrap,
    cohen_kappa,
    count_table,
    judge_agreement,
    precision,
    ranks,
    recall,
    spearman,
    table_figures,
)

# (judge score, human accepted); at threshold 7 the judge keeps the 9, 8, 7 and the second 8.
DECISIONS = [(9, True), (8, True), (7, False), (6, True), (4, False), (3, False), (8, False),
             (2, False)]


def test_kappa_precision_recall_by_hand() -> None:
    kept = [s >= 7 for s, _ in DECISIONS]
    accepted = [a for _, a in DECISIONS]
    # Agreement 5/8; kept 4/8, accepted 3/8: chance 0.5*0.375 + 0.5*0.625 = 0.5.
    assert cohen_kappa(kept, accepted) == pytest.approx((0.625 - 0.5) / 0.5)
    assert precision(kept, accepted) == 0.5          # 2 of the 4 kept
    assert recall(kept, accepted) == pytest.approx(2 / 3)   # 2 of the 3 accepted


def test_kappa_edge_cases() -> None:
    assert cohen_kappa([True, False], [True, False]) == 1.0
    assert cohen_kappa([True, False], [False, True]) == -1.0
    assert cohen_kappa([True, True], [True, True]) is None   # chance agreement is total
    assert cohen_kappa([], []) is None
    assert precision([False], [True]) is None and recall([True], [False]) is None


def test_spearman_by_hand() -> None:
    assert ranks([9, 8, 7, 6, 4, 3, 8, 2]) == [8, 6.5, 5, 4, 3, 2, 6.5, 1]
    # Ranks of accept: five rejects share 3, three accepts share 7; covariance 20 over
    # sqrt(41.5 * 30).
    rho = spearman([s for s, _ in DECISIONS], [float(a) for _, a in DECISIONS])
    assert rho == pytest.approx(20 / math.sqrt(41.5 * 30))
    assert spearman([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [1, 1, 1]) is None
    assert spearman([1], [1]) is None


def test_best_threshold_by_hand() -> None:
    # Kappa per threshold: 1-2: 0, 3: 0.158, 4: 1/3, 5 and 6: 9/17, 7: 1/4, 8: 7/15, 9: 5/13,
    # 10: 0. The lower of the tied best wins.
    threshold, kappa = best_threshold(DECISIONS)
    assert threshold == 5 and kappa == pytest.approx(9 / 17)
    table = count_table(DECISIONS)
    assert table_figures(table, 8)["kappa"] == pytest.approx(7 / 15)
    assert table_figures(table, 9)["kappa"] == pytest.approx(5 / 13)
    assert best_threshold([]) == (None, None)


def test_bootstrap_interval() -> None:
    perfect = [(9, True), (2, False)] * 10
    # Every resample holding both kinds agrees fully; one-kind resamples are undefined.
    assert bootstrap(perfect, 7)["kappa"] == (1.0, 1.0)
    once = bootstrap(DECISIONS, 7, resamples=200, seed=1)
    assert once == bootstrap(DECISIONS, 7, resamples=200, seed=1)
    for name, interval in once.items():
        assert interval is not None and interval[0] <= interval[1], name
    low, high = once["kappa"]
    assert -1 <= low <= 0.25 <= high <= 1
    assert bootstrap(DECISIONS[:1], 7) == dict.fromkeys(NAMES)


def test_count_table_figures_equal_the_figures_on_decisions() -> None:
    rng = random.Random(11)
    for _ in range(50):
        decisions = [(rng.choice((1, 3, 5, 6.5, 7, 7.5, 8, 10)), rng.random() < 0.5)
                     for _ in range(rng.randint(1, 30))]
        kept = [s >= 7 for s, _ in decisions]
        accepted = [a for _, a in decisions]
        expected = {"kappa": cohen_kappa(kept, accepted),
                    "spearman": spearman([s for s, _ in decisions], [float(a) for a in accepted]),
                    "precision": precision(kept, accepted), "recall": recall(kept, accepted)}
        found = table_figures(count_table(decisions), 7)
        for name in NAMES:
            if expected[name] is None:
                assert found[name] is None, name
            else:
                assert found[name] == pytest.approx(expected[name]), name


def test_judge_agreement_all_figures() -> None:
    figures = judge_agreement(DECISIONS, 7, resamples=200)
    assert (figures.n, figures.accepted, figures.kept) == (8, 3, 4)
    assert figures.kappa == pytest.approx(0.25) and figures.precision == 0.5
    assert figures.best_threshold == 5
    data = figures.as_dict()
    assert {"kappa", "spearman", "precision", "recall", "n", "kappa_ci",
            "best_threshold"} <= set(data)
    assert isinstance(data["kappa_ci"], list) and len(data["kappa_ci"]) == 2


def test_no_decisions_gives_n_zero_and_no_figures() -> None:
    data = judge_agreement([], 7).as_dict()
    assert data["n"] == 0
    assert all(data[key] is None for key in ("kappa", "spearman", "precision", "recall",
                                             "kappa_ci", "best_threshold"))
