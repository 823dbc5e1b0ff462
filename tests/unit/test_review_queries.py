"""Review's reads and writes on a store made by a real pipeline run and a real evaluation."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tui.support_screens import (
    PARSE_FAILURE,
    SAMPLES,
    UNJUDGED_IMAGE,
    build_store,
    query,
    write_config,
)
from visinstruct.core.config import load_config
from visinstruct.core.errors import BackendError, InputError
from visinstruct.core.review.samples import (
    STATES,
    SampleFilter,
    accept_pair,
    count_samples,
    decide_pair,
    edit_pair,
    prompt_versions_in_use,
    reject_pair,
    rejudge,
    sample_detail,
    sample_page,
)
from visinstruct.core.store.database import Store
from visinstruct.core.store.queries import KEPT_SQL

THRESHOLD = 7.0


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real run and evaluation per module; each test gets its own copy of the store."""
    folder = tmp_path_factory.mktemp("built")
    build_store(write_config(folder))
    return folder


@pytest.fixture
def config_path(built: Path, tmp_path: Path) -> Path:
    for name in ("run.db", "script.json"):
        shutil.copy(built / name, tmp_path / name)
    text = (built / "run.toml").read_text(encoding="utf-8").replace(str(built), str(tmp_path))
    (tmp_path / "run.toml").write_text(text, encoding="utf-8")
    return tmp_path / "run.toml"


@pytest.fixture
def store(config_path: Path) -> Iterator[Store]:
    with Store(config_path.parent / "run.db") as opened:
        yield opened


def all_rows(store: Store, filters: SampleFilter, limit: int = 10) -> list:
    rows, after = [], None
    while True:
        page = sample_page(store, filters, THRESHOLD, after=after, limit=limit)
        rows.extend(page.rows)
        if not page.has_more:
            return rows
        after = page.rows[-1].key


def test_keyset_pages_walk_every_sample_once_in_order(store: Store) -> None:
    rows = all_rows(store, SampleFilter(), limit=10)

    keys = [r.key for r in rows]
    assert len(keys) == SAMPLES == len(set(keys))
    assert keys == sorted(keys)
    assert count_samples(store, SampleFilter(), THRESHOLD) == SAMPLES


def test_row_figures_match_the_stored_judgements(store: Store) -> None:
    row = sample_page(store, SampleFilter(task="conversation"), THRESHOLD, limit=1).rows[0]
    scores = [r[0] for r in query(store.path, "SELECT j.score FROM judgements j JOIN pairs p "
                                  "ON p.id = j.pair_id WHERE p.generation_id = ?",
                                  (row.generation_id,))]

    assert row.pairs == len(scores)
    assert row.mean_score == pytest.approx(sum(scores) / len(scores))
    assert row.kept == sum(s >= THRESHOLD for s in scores)


# A sample is listed under a verdict when one of its pairs has that verdict.
_HAS = {"kept": lambda r: r.kept > 0, "dropped": lambda r: r.dropped > 0,
        "unjudged": lambda r: r.unjudged > 0, "gated": lambda r: r.gated > 0,
        "flagged": lambda r: r.flagged > 0, "evaluated": lambda r: r.evaluated,
        "parse_failure": lambda r: r.state == "parse_failure"}


@pytest.mark.parametrize("state", [s for s in STATES if s != "reviewed"])
def test_state_filter_returns_exactly_the_samples_in_that_state(store: Store, state: str) -> None:
    if state in ("gated", "flagged"):
        # A quality gate stopped (or flagged) every pair of one sample.
        store.write_sync(lambda c: c.execute(
            "INSERT INTO pair_gates (pair_id, rule, action, reason) SELECT id, 'placeholder', "
            f"'{'drop' if state == 'gated' else 'flag'}', 'test' FROM pairs "
            "WHERE generation_id = (SELECT MIN(id) FROM generations WHERE status = 'ok')"))
    everything = all_rows(store, SampleFilter())
    wanted = [r for r in everything if r.status == "ok" or state in ("parse_failure", "evaluated")]
    wanted = [r for r in wanted if _HAS[state](r)]

    filtered = all_rows(store, SampleFilter(state=state), limit=7)

    assert [r.key for r in filtered] == [r.key for r in wanted]
    assert count_samples(store, SampleFilter(state=state), THRESHOLD) == len(wanted)
    assert wanted, f"the test store has no {state} sample"


def test_the_scripted_failures_show_as_parse_failure_and_unjudged(store: Store) -> None:
    failed = all_rows(store, SampleFilter(state="parse_failure"))
    unjudged = all_rows(store, SampleFilter(state="unjudged"))

    assert [r.key for r in failed] == [PARSE_FAILURE]
    assert {r.image_id for r in unjudged} == {UNJUDGED_IMAGE}
    assert all(r.mean_score is None for r in unjudged)


def test_score_task_and_version_filters(store: Store) -> None:
    high = all_rows(store, SampleFilter(min_score=8))
    middle = all_rows(store, SampleFilter(min_score=6, max_score=7.5, task="detail"))
    versions = dict(prompt_versions_in_use(store))
    detail_version = next(v for v, task in versions.items() if task == "detail")
    by_version = all_rows(store, SampleFilter(prompt_version=detail_version))

    assert high and all(r.mean_score is not None and r.mean_score >= 8 for r in high)
    assert middle and all(r.task == "detail" and 6 <= (r.mean_score or 0) <= 7.5 for r in middle)
    assert len(by_version) == 24 and {r.task for r in by_version} == {"detail"}
    assert set(versions.values()) == {"conversation", "detail", "complex_reasoning"}


def test_unknown_state_is_refused(store: Store) -> None:
    with pytest.raises(InputError, match="unknown review state"):
        sample_page(store, SampleFilter(state="shiny"), THRESHOLD)


def test_detail_holds_pairs_baseline_and_verdicts(store: Store) -> None:
    detail = sample_detail(store, 990001, "conversation", THRESHOLD)
    assert detail is not None
    verdicts = query(store.path, "SELECT COUNT(*) FROM evaluations WHERE image_id = 990001 "
                     "AND task = 'conversation'")[0][0]

    assert detail.status == "ok" and detail.pairs
    assert all(p.score is not None and p.reason for p in detail.pairs)
    assert detail.baseline and "carrot" in " ".join(p.answer for p in detail.baseline).lower()
    assert len(detail.verdicts) == verdicts == 2
    assert {v.shown_first for v in detail.verdicts} == {"ours", "baseline"}
    assert detail.image.captions and detail.tasks == ("conversation", "detail", "complex_reasoning")


def test_a_judge_reason_that_says_nothing_is_marked_on_the_pair(store: Store) -> None:
    detail = sample_detail(store, 990001, "conversation", THRESHOLD)
    assert detail is not None and len(detail.pairs) >= 3
    assert all(p.reason_missing == "" for p in detail.pairs)
    empty, dots, real = (p.pair_id for p in detail.pairs[:3])
    store.write_sync(lambda c: c.executemany(
        "UPDATE judgements SET reason = ? WHERE pair_id = ?", [("", empty), ("...", dots)]))

    marked = {p.pair_id: p.reason_missing
              for p in sample_detail(store, 990001, "conversation", THRESHOLD).pairs}
    assert "empty" in marked[empty] and "punctuation" in marked[dots]
    assert marked[real] == ""


def test_detail_of_a_parse_failure_keeps_the_raw_text(store: Store) -> None:
    detail = sample_detail(store, *PARSE_FAILURE, THRESHOLD)
    assert detail is not None

    assert detail.status == "parse_failure" and not detail.pairs
    assert "rather not say" in detail.raw and detail.problems


def test_detail_without_task_takes_the_first_task_and_unknown_image_is_none(store: Store) -> None:
    detail = sample_detail(store, 990004, None, THRESHOLD)

    assert detail is not None and detail.task == "conversation"
    assert sample_detail(store, 1, None, THRESHOLD) is None


def test_human_decisions_win_over_the_judge_and_match_the_export_rule(store: Store) -> None:
    pairs = sample_detail(store, 990001, "conversation", THRESHOLD).pairs  # type: ignore[union-attr]
    dropped = next(p for p in pairs if not p.kept)
    kept = next(p for p in pairs if p.kept)

    accept_pair(store, dropped.pair_id)
    reject_pair(store, kept.pair_id)
    after = {p.pair_id: p for p in sample_detail(store, 990001, "conversation", THRESHOLD).pairs}  # type: ignore[union-attr]
    exported = {r[0] for r in query(store.path, f"SELECT pair_id FROM pair_state WHERE {KEPT_SQL}",
                                    (THRESHOLD,))}

    assert after[dropped.pair_id].kept and after[dropped.pair_id].decision == "accept"
    assert not after[kept.pair_id].kept and after[kept.pair_id].decision == "reject"
    assert dropped.pair_id in exported and kept.pair_id not in exported


def test_edit_is_stored_as_a_review_and_the_original_stays(store: Store) -> None:
    pair = sample_detail(store, 990001, "conversation", THRESHOLD).pairs[0]  # type: ignore[union-attr]

    edit_pair(store, pair.pair_id, "  What is being cut? ", "Carrots, on a wooden board.")
    edited = sample_detail(store, 990001, "conversation", THRESHOLD).pairs[0]  # type: ignore[union-attr]
    original = query(store.path, "SELECT question, answer FROM pairs WHERE id = ?", (pair.pair_id,))

    assert (edited.question, edited.answer) == ("What is being cut?", "Carrots, on a wooden board.")
    assert edited.edited and edited.original_question == pair.question
    assert original == [(pair.question, pair.answer)]
    assert query(store.path, "SELECT decision FROM reviews") == [("edit",)]


def test_bad_writes_are_refused_with_clear_errors(store: Store) -> None:
    with pytest.raises(InputError, match="needs both a question and an answer"):
        edit_pair(store, 1, "   ", "an answer")
    with pytest.raises(InputError, match="pair 999999 is not in"):
        accept_pair(store, 999999)
    with pytest.raises(InputError, match="not one of accept, reject"):
        decide_pair(store, 1, "maybe")
    assert query(store.path, "SELECT COUNT(*) FROM reviews") == [(0,)]


def test_rejudge_stores_new_scores_through_the_ledger(config_path: Path, store: Store) -> None:
    config_path.with_name("script.json").write_text(json.dumps({"rules": [{
        "match": "^judge", "reply": json.dumps({"scores": [
            {"index": i, "score": 10, "reason": "rejudged"} for i in range(1, 9)]})}]}))
    config = load_config(config_path)
    detail = sample_detail(store, 990003, "conversation", THRESHOLD)
    assert detail is not None and detail.generation_id is not None
    calls_before = query(store.path, "SELECT COUNT(*) FROM llm_calls")[0][0]

    result = rejudge(config, store, detail.generation_id)
    after = sample_detail(store, 990003, "conversation", THRESHOLD)
    calls = query(store.path, "SELECT stage, status, run_id FROM llm_calls WHERE id > ?",
                  (calls_before,))

    assert [j.score for j in result.judgements] == [10.0] * len(detail.pairs)
    assert after is not None and all(p.score == 10 and p.kept for p in after.pairs)
    assert calls == [("judge", "ok", None)]


def test_rejudge_refuses_a_parse_failure_and_reports_a_failed_call(config_path: Path,
                                                                  store: Store) -> None:
    config_path.with_name("script.json").write_text(json.dumps({"rules": [
        {"match": "^judge", "error": "permanent"}]}))
    config = load_config(config_path)
    failed = sample_detail(store, *PARSE_FAILURE, THRESHOLD)
    good = sample_detail(store, 990001, "conversation", THRESHOLD)
    assert failed is not None and good is not None and good.generation_id is not None

    with pytest.raises(InputError, match="no pairs to judge"):
        rejudge(config, store, failed.generation_id or 0)
    with pytest.raises(BackendError, match="re-judging image 990001"):
        rejudge(config, store, good.generation_id)
    assert query(store.path,
                 "SELECT status FROM llm_calls ORDER BY id DESC LIMIT 1") == [("error",)]


def test_count_stops_when_cancelled(store: Store) -> None:
    cancel = threading.Event()
    cancel.set()

    assert count_samples(store, SampleFilter(state="kept"), THRESHOLD, cancel) is None
    assert count_samples(store, SampleFilter(state="kept"), THRESHOLD) == len(
        all_rows(store, SampleFilter(state="kept")))


def _synthetic_store(path: Path, images: int) -> Store:
    """`images` images with three judged generations each, written straight into the tables."""
    store = Store(path)
    store.close()
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT INTO images (id, file_name, width, height) VALUES (?, ?, 1, 1)",
                         [(i, f"{i}.jpg") for i in range(1, images + 1)])
        conn.executemany(
            "INSERT INTO generations (id, image_id, task, prompt_version, model, status, purpose, "
            "created_at) VALUES (?, ?, ?, 'v', 'm', 'ok', 'run', 0)",
            [(i * 3 + t, i, task, ) for i in range(1, images + 1)
             for t, task in enumerate(("conversation", "detail", "complex_reasoning"))])
        conn.execute("INSERT INTO pairs (id, generation_id, idx, question, answer) "
                     "SELECT id, id, 0, 'q', 'a' FROM generations")
        conn.execute("INSERT INTO judgements (pair_id, generation_id, score, prompt_version, "
                     "model, created_at) SELECT id, id, 1 + id % 10, 'j', 'm', 0 FROM pairs")
    conn.close()
    return Store(path)


def _steps(store: Store, work: object) -> int:
    """How many SQLite VM steps (in thousands) `work()` takes on this thread's connection."""
    counter = [0]

    def tick() -> int:
        counter[0] += 1
        return 0

    conn = store.reader()
    conn.set_progress_handler(tick, 1000)
    try:
        work()  # type: ignore[operator]
    finally:
        conn.set_progress_handler(None, 0)
    return counter[0]


def test_a_page_costs_the_same_on_a_store_eight_times_bigger(tmp_path: Path) -> None:
    small = _synthetic_store(tmp_path / "small.db", 1_000)
    big = _synthetic_store(tmp_path / "big.db", 8_000)
    try:
        def first_page(store: Store) -> object:
            return lambda: sample_page(store, SampleFilter(state="kept", task="detail"), THRESHOLD)

        small_steps, big_steps = _steps(small, first_page(small)), _steps(big, first_page(big))
        started = time.perf_counter()
        page = sample_page(big, SampleFilter(), THRESHOLD, after=(7_000, "detail"))
        elapsed = time.perf_counter() - started
    finally:
        small.close()
        big.close()

    assert big_steps <= small_steps * 1.5 + 5, (small_steps, big_steps)
    assert page.rows[0].key == (7_001, "complex_reasoning")
    assert elapsed < 0.5


def test_reviewed_filter_shows_samples_with_a_decision_until_it_is_cleared(store: Store) -> None:
    from visinstruct.core.review.decisions import clear_decision, restore_reviews

    assert all_rows(store, SampleFilter(state="reviewed")) == []
    row = all_rows(store, SampleFilter(state="kept"))[0]
    pair_id = query(store.path, "SELECT id FROM pairs WHERE generation_id = ? ORDER BY idx",
                    (row.generation_id,))[0][0]
    accept_pair(store, pair_id)

    assert [r.key for r in all_rows(store, SampleFilter(state="reviewed"))] == [row.key]
    cleared = clear_decision(store, pair_id)
    assert all_rows(store, SampleFilter(state="reviewed")) == []
    restore_reviews(store, cleared)
    assert [r.key for r in all_rows(store, SampleFilter(state="reviewed"))] == [row.key]
