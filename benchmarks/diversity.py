"""Print what the diversity figures and the judge-human agreement cost on synthetic data.

Usage: python benchmarks/diversity.py   (about half a minute on one core)
"""

from __future__ import annotations

import random
import time

from visinstruct.core.analysis.agreement import judge_agreement
from visinstruct.core.analysis.diversity import (
    SAMPLE_CAP,
    measure_sides,
    near_duplicate_rate,
    self_bleu,
)


def _texts(rng: random.Random, count: int, low: int, high: int) -> list[str]:
    common = ["the", "a", "dog", "cat", "on", "in", "is", "are", "of", "with"]
    vocabulary = [f"w{i}" for i in range(3000)] + common * 50
    return [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(low, high)))
            for _ in range(count)]


def _timed(label: str, work: object) -> None:
    started = time.perf_counter()
    work()  # type: ignore[operator]
    print(f"{label:<52} {time.perf_counter() - started:6.2f} s")


def main() -> None:
    rng = random.Random(0)
    answers = _texts(rng, 20_000, 20, 120)
    questions = [text + "?" for text in _texts(rng, 20_000, 4, 12)]
    sample = answers[:SAMPLE_CAP]
    _timed(f"self-BLEU, {SAMPLE_CAP:,} answers of 20-120 words", lambda: self_bleu(sample))
    _timed(f"near-duplicate rate, {SAMPLE_CAP:,} answers", lambda: near_duplicate_rate(sample))
    _timed("every figure, two sides of 20,000 pairs (capped)",
           lambda: measure_sides({"ours": (answers, questions),
                                  "baseline": (answers[::-1], questions[::-1])}))
    for n in (100, 500, 1000):
        decisions = [(float(rng.randint(1, 10)), rng.random() < 0.6) for _ in range(n)]
        _timed(f"judge agreement with 1,000 bootstrap resamples, n={n}",
               lambda d=decisions: judge_agreement(d, 7))


if __name__ == "__main__":
    main()
