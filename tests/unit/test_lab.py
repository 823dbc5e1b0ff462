"""Prompt lab trials and version figures on a store made by a real run and evaluation."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tui.support_screens import build_store, query, write_config
from visinstruct.core.config import Config, load_config
from visinstruct.core.errors import ConfigError, InputError
from visinstruct.core.evaluation.aggregate import summarize_by_task
from visinstruct.core.evaluation.view import evaluation_overview, evaluation_sets, verdict_rows
from visinstruct.core.events import Event
from visinstruct.core.lab.trials import (
    LabImageDone,
    parse_lab_template,
    random_image_ids,
    run_lab,
    version_stats,
)
from visinstruct.core.store.database import Store
from visinstruct.core.store.queries import status_counts
from visinstruct.core.text.prompt_versions import active_template, save_version
from visinstruct.core.text.prompts import PromptTemplate, load_prompt

THRESHOLD = 7.0
IMAGES = [990001, 990004, 990005]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("built")
    build_store(write_config(folder))
    return folder


@pytest.fixture
def config(built: Path, tmp_path: Path) -> Config:
    for name in ("run.db", "script.json"):
        shutil.copy(built / name, tmp_path / name)
    text = (built / "run.toml").read_text(encoding="utf-8").replace(str(built), str(tmp_path))
    (tmp_path / "run.toml").write_text(text, encoding="utf-8")
    return load_config(tmp_path / "run.toml")


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    with Store(config.db) as opened:
        yield opened


def edited(name: str, old: str, new: str) -> PromptTemplate:
    text = load_prompt(name).text
    assert old in text
    return parse_lab_template(text.replace(old, new), name)


def run_data(store: Store) -> tuple[dict[str, int], list[tuple[object, ...]]]:
    """What a run would export or count: none of it may change in a trial (calls aside)."""
    counts = {k: v for k, v in status_counts(store, THRESHOLD).items() if k != "calls"}
    return (counts,
            query(store.path, "SELECT pair_id, question, answer, score, decision FROM pair_state "
                  "ORDER BY pair_id"))


def test_a_generation_trial_is_lab_data_beside_the_saved_versions_run_data(config: Config,
                                                                           store: Store) -> None:
    before = run_data(store)
    events: list[Event] = []
    template = edited("conversation", "3 to 5 turns", "2 to 4 turns")

    result = run_lab(config, store, template, IMAGES, emit=events.append)

    purposes = query(store.path, "SELECT DISTINCT purpose FROM generations WHERE purpose != 'run'")
    assert run_data(store) == before
    assert purposes == [("lab:1",)] and result.purpose == "lab:1"
    assert [s.image_id for s in result.trial_samples] == IMAGES
    assert all(s.version == template.version and s.pairs and not s.reused
               for s in result.trial_samples)
    assert all(s.reused and s.version == result.saved_version for s in result.saved_samples)
    assert result.saved_version == active_template(store, "conversation").version
    assert [e.done for e in events if isinstance(e, LabImageDone)] == [1, 2, 3]
    summary = result.trial_summary
    scores = [x for s in result.trial_samples for x in s.scores]
    assert summary.mean_score == pytest.approx(sum(scores) / len(scores))  # type: ignore[arg-type]
    assert summary.keep_rate == pytest.approx(sum(x >= THRESHOLD for x in scores) / len(scores))


def test_trials_never_collide_even_with_the_same_text_and_images(config: Config,
                                                                 store: Store) -> None:
    template = edited("detail", 'name = "detail"', 'name = "detail"\n# trial')

    first = run_lab(config, store, template, IMAGES[:2], emit=lambda e: None)
    second = run_lab(config, store, template, IMAGES[:2], emit=lambda e: None)

    assert (first.trial, second.trial) == (1, 2)
    assert query(store.path, "SELECT purpose, COUNT(*) FROM generations WHERE purpose LIKE 'lab:%' "
                 "GROUP BY purpose") == [("lab:1", 2), ("lab:2", 2)]


def test_a_judge_trial_judges_fresh_lab_conversations_with_both_judge_versions(
        config: Config, store: Store) -> None:
    before = run_data(store)
    template = edited("judge", 'name = "judge"', 'name = "judge"\n# stricter')

    result = run_lab(config, store, template, [990001], emit=lambda e: None)

    saved = active_template(store, "judge").version
    by_version = dict(query(store.path, "SELECT j.prompt_version, COUNT(*) FROM judgements j "
                            "JOIN generations g ON g.id = j.generation_id "
                            "WHERE g.purpose = 'lab:1' GROUP BY j.prompt_version"))
    assert run_data(store) == before
    assert [s.task for s in result.trial_samples] == list(config.generation.tasks)
    assert {s.version for s in result.trial_samples} == {template.version}
    assert {s.version for s in result.saved_samples} == {saved}
    assert by_version[template.version] == by_version[saved] > 0


def test_an_evaluated_trial_stores_verdicts_the_evaluation_screen_leaves_out(
        config: Config, store: Store) -> None:
    overview_before = evaluation_overview(store, resamples=50)
    template = edited("conversation", "3 to 5 turns", "3 or 4 turns")

    result = run_lab(config, store, template, IMAGES[:2], emit=lambda e: None, evaluate=True)

    orders = query(store.path, "SELECT e.generation_id, COUNT(DISTINCT e.shown_first) "
                   "FROM evaluations e JOIN generations g ON g.id = e.generation_id "
                   "WHERE g.purpose = 'lab:1' GROUP BY e.generation_id")
    # Every lab conversation with a kept pair (at most two images x two versions) is
    # compared in both orders; which ones have a kept pair depends on the scripted scores.
    assert 2 <= len(orders) <= 4 and all(n == 2 for _, n in orders)
    samples = result.trial_samples + result.saved_samples
    # Only a conversation with a kept pair is compared with the baseline.
    assert all(s.ours_score is not None and s.baseline_score is not None
               for s in samples if s.kept)
    assert all(s.ours_score is None for s in samples if not s.kept)
    assert result.trial_summary.relative_score is not None
    assert evaluation_overview(store, resamples=50) == overview_before


def test_version_stats_match_the_store_and_the_evaluation(config: Config, store: Store) -> None:
    template = edited("conversation", "3 to 5 turns", "2 to 4 turns")
    run_lab(config, store, template, IMAGES, emit=lambda e: None)

    stats = version_stats(store, "conversation", THRESHOLD)

    active = stats[0]
    run_scores = [r[0] for r in query(store.path, "SELECT score FROM pair_state WHERE task = "
                                      "'conversation' AND score IS NOT NULL")]
    assert active.active and active.samples == 24 and active.parse_failures == 1
    assert active.parse_failure_rate == pytest.approx(1 / 24)
    assert active.mean_score == pytest.approx(sum(run_scores) / len(run_scores))
    # A trial's generations are the lab's: the "all" figures count run data only, so a
    # version only a trial used has no "all" row, and the active one is as the runs left it.
    assert all(s.version != template.version for s in stats)
    chosen = evaluation_sets(store)[0]
    expected = summarize_by_task(verdict_rows(store, chosen), resamples=10)["conversation"]
    assert active.relative_score == pytest.approx(expected.relative_score, abs=0.01)
    assert active.evaluated == expected.n


def test_saving_a_version_makes_it_the_one_runs_use(config: Config, store: Store) -> None:
    template = edited("conversation", "3 to 5 turns", "2 to 4 turns")

    save_version(store, template, activate=True)

    assert active_template(store, "conversation").version == template.version
    assert version_stats(store, "conversation")[0].version == template.version


def test_edited_text_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_lab_template('name = "conversation"\ntask = ', "conversation")
    with pytest.raises(ConfigError, match="it must stay 'conversation'"):
        parse_lab_template(load_prompt("conversation").text.replace(
            'name = "conversation"', 'name = "chat"'), "conversation")
    with pytest.raises(InputError, match="not 'evaluate'"):
        parse_lab_template(load_prompt("evaluate").text, "evaluate")


def test_bad_image_choices_are_refused(config: Config, store: Store) -> None:
    template = load_prompt("conversation")

    with pytest.raises(InputError, match="image ids not in .*: 5"):
        run_lab(config, store, template, [990001, 5], emit=lambda e: None)
    with pytest.raises(InputError, match="at least one image"):
        run_lab(config, store, template, [], emit=lambda e: None)
    assert query(store.path, "SELECT COUNT(*) FROM generations WHERE purpose != 'run'") == [(0,)]


def test_a_cancelled_trial_makes_no_calls(config: Config, store: Store) -> None:
    cancel = threading.Event()
    cancel.set()
    calls = query(store.path, "SELECT COUNT(*) FROM llm_calls")

    result = run_lab(config, store, edited("conversation", "3 to 5", "2 to 3"), IMAGES,
                     emit=lambda e: None, cancel=cancel)

    assert result.cancelled and not result.trial_samples
    assert query(store.path, "SELECT COUNT(*) FROM llm_calls") == calls


def test_random_images_are_distinct_stored_images(store: Store) -> None:
    ids = random_image_ids(store, 3)

    assert len(set(ids)) == 3 and ids == sorted(ids)
    assert all(990001 <= i <= 990024 for i in ids)


def test_a_generation_trial_judges_as_a_run_does_each_panel_member_by_its_own_sight(
        config: Config, store: Store, tmp_path: Path) -> None:
    from dataclasses import replace

    from PIL import Image as PILImage

    folder = tmp_path / "images"
    folder.mkdir()
    for image_id in IMAGES:
        PILImage.new("RGB", (64, 48), (200, 30, 30)).save(folder / f"{image_id:012d}.jpg")
    fake = config.models["fake"]
    seeing = replace(config, source=replace(config.source, images_dir=folder),
                     judge=replace(config.judge, models=("fake", "blind")),
                     models={**config.models, "fake": replace(fake, vision=True),
                             "blind": replace(fake, name="blind", vision=False)})

    run_lab(seeing, store, edited("conversation", "3 to 5 turns", "2 to 4 turns"), IMAGES[:1],
            emit=lambda e: None)

    used = query(store.path, "SELECT DISTINCT j.model, j.prompt_version FROM judgements j "
                 "JOIN generations g ON g.id = j.generation_id WHERE g.purpose = 'lab:1' "
                 "AND j.model NOT LIKE 'panel:%' ORDER BY 1")
    # The member shown the picture asks whether answers are true of it; the blind one, as in
    # a run, keeps the text judge prompt (the vision one without a picture would mislead it).
    assert used == [("blind", load_prompt("judge").version),
                    ("fake", load_prompt("judge_vision").version)]
