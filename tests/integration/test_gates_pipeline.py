"""Quality gates in a run: a judge that scores everything 9 still exports only the good pairs."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from visinstruct.core import pipeline
from visinstruct.core.config import load_config
from visinstruct.core.events import Event
from visinstruct.core.review.samples import accept_pair
from visinstruct.core.store.database import Store
from visinstruct.dataset import sample

CliResult = tuple[int, str, str]

GOOD_CONVERSATION = [
    {"question": "What is the main activity in this scene?",
     "answer": "Someone is busy with an everyday task."},
    {"question": "What time of day does it look like?",
     "answer": "It looks like daytime, with plenty of light."},
]
UNGROUNDED = {"question": "What animal is hiding in the corner?",
              "answer": "A giraffe is hiding in the corner."}
GOOD_REASONING = [
    ("Why might this moment be memorable?",
     "It captures an ordinary activity that feels calm and pleasant."),
    ("What could happen next?", "The activity will probably go on for a while."),
]
DETAIL_EXAMPLE = ("A sunny morning outside a small bakery. A red bicycle leans against the shop "
                  "window on the left side of the picture, its wheels resting on the pavement.")

# JSON shape: every bad kind, then a final pair cut off mid-string at the token limit.
CONVERSATION_REPLY = json.dumps({"pairs": [
    GOOD_CONVERSATION[0],
    {"question": "...", "answer": "..."},
    {"question": "What is in the picture?",
     "answer": "I'm sorry, but as an AI I cannot see images."},
    {"question": "They will most likely board the bus.",
     "answer": "They will most likely board the bus."},
    {"question": "What animal is in the kitchen?",
     "answer": "An orange cat is sitting on the kitchen counter."},
    {"question": "What is the main activity in the scene?",
     "answer": "Someone is busy with an everyday task."},
    GOOD_CONVERSATION[1],
    UNGROUNDED,
]})[:-2] + ', {"question": "Where is the light coming from?", "answer": "The'
# Marker shape: the same kinds, and an answer cut to one word by the token limit.
REASONING_REPLY = f"""Question: {GOOD_REASONING[0][0]}
Answer: {GOOD_REASONING[0][1]}
Question: [Question 2 goes here]
Answer: <answer>
Question: What can you see?
Answer: As an AI language model, I cannot see the image.
Question: {GOOD_REASONING[0][0]}
Answer: {GOOD_REASONING[0][1]}
Question: Is the scene calm?
Answer: Is the scene calm?
Question: What are the two people likely to do in the next few moments, and why?
Answer: They will probably go home soon.
Question: {GOOD_REASONING[1][0]}
Answer: {GOOD_REASONING[1][1]}
Question: Where will they go afterwards?
Answer: The"""
ALL_NINE = json.dumps(
    {"scores": [{"index": i, "score": 9, "reason": "fine"} for i in range(1, 13)]})
RULES = [
    {"match": "^generate:conversation", "reply": CONVERSATION_REPLY, "finish": "length"},
    {"match": "^generate:complex", "reply": REASONING_REPLY, "finish": "length"},
    {"match": "^generate:detail", "reply": json.dumps({"description": DETAIL_EXAMPLE})},
    {"match": "^judge:", "reply": ALL_NINE},
]
PER_IMAGE_DROPS = {"placeholder": 2, "refusal": 2, "same_as_question": 2, "prompt_copy": 3,
                   "duplicate": 2, "cut_off": 1}


def write_config(tmp_path: Path, gates: str = "", judge: str = 'model = "fake"',
                 models: str = "", rules: list[dict[str, Any]] | None = None) -> Path:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"rules": rules or RULES}))
    config = tmp_path / "run.toml"
    config.write_text(f"""db = "{tmp_path / 'run.db'}"
[source]
coco_captions = "{sample.captions_path()}"
coco_instances = "{sample.instances_path()}"
limit = 2
[generation]
model = "fake"
[judge]
{judge}
threshold = 7
[gates]
{gates}
[models.fake]
backend = "scripted"
script = "{script}"
max_in_flight = 2
{models}""")
    return config


def run(config: Path) -> pipeline.RunSummary:
    loaded = load_config(config)
    events: list[Event] = []
    lock = threading.Lock()

    def emit(event: Event) -> None:
        with lock:
            events.append(event)

    store = Store(loaded.db)
    try:
        return pipeline.run(loaded, store, emit)
    finally:
        store.close()


def status(run_cli: Callable[..., CliResult], db: Path) -> dict[str, Any]:
    code, out, err = run_cli("status", "--db", db, "--json")
    assert code == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


def exported(run_cli: Callable[..., CliResult], db: Path, out: Path,
             *extra: str) -> list[list[str]]:
    code, _, err = run_cli("export", "--format", "llava", "--db", db, "--out", out, *extra)
    assert code == 0, err
    records = json.loads(out.read_text())
    return [[turn["value"].replace("<image>\n", "") for turn in record["conversations"]]
            for record in records]


def calls(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT stage, COUNT(*) FROM llm_calls GROUP BY stage"))


def expected_export() -> list[list[str]]:
    conversation = [text for pair in (*GOOD_CONVERSATION, UNGROUNDED)
                    for text in (pair["question"], pair["answer"])]
    reasoning = [text for pair in GOOD_REASONING for text in pair]
    return [reasoning, conversation] * 2  # by image, then task name


def test_a_judge_scoring_every_pair_9_exports_only_the_good_pairs(
        tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    config = write_config(tmp_path)
    summary = run(config)
    assert summary.status == "finished" and summary.failed_units == 0
    db = tmp_path / "run.db"
    assert exported(run_cli, db, tmp_path / "out.json") == expected_export()
    # A lower threshold brings back nothing a gate stopped.
    assert exported(run_cli, db, tmp_path / "low.json", "--threshold", "1") == expected_export()
    report = status(run_cli, db)
    assert report["dropped_by_rule"] == {rule: 2 * n for rule, n in PER_IMAGE_DROPS.items()}
    assert report["dropped_pairs"] == 2 * sum(PER_IMAGE_DROPS.values())
    assert report["flagged_by_rule"] == {"ungrounded_object": 2}
    assert report["flagged_pairs"] == 2
    assert report["kept_pairs"] == 10 and report["unjudged_pairs"] == 0
    with sqlite3.connect(db) as conn:
        # Gated pairs were never sent to the judge: only passing pairs have judgements.
        judged = conn.execute("SELECT COUNT(*) FROM judgements").fetchone()[0]
        reasons = dict(conn.execute("SELECT rule, reason FROM pair_gates WHERE rule = 'cut_off'"))
    assert judged == 10
    assert "token limit" in reasons["cut_off"]


def test_ungrounded_object_drop_leaves_the_ungrounded_pairs_out_of_the_export(
        tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    run(write_config(tmp_path, gates='ungrounded_object = "drop"'))
    db = tmp_path / "run.db"
    without = [[text for text in texts if text not in UNGROUNDED.values()]
               for texts in expected_export()]
    assert exported(run_cli, db, tmp_path / "out.json", "--threshold", "1") == without
    report = status(run_cli, db)
    assert report["dropped_by_rule"]["ungrounded_object"] == 2
    assert report["flagged_by_rule"] == {} and report["kept_pairs"] == 8


def test_changing_gates_judges_only_the_pairs_that_newly_pass(
        tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    run(write_config(tmp_path))
    db = tmp_path / "run.db"
    first = calls(db)
    assert first == {"generate": 6, "judge": 4}  # detail: every pair gated, never judged
    run(write_config(tmp_path, gates="same_as_question = false"))
    # No generation again; one judge call per conversation that gained a passing pair.
    assert calls(db) == {"generate": 6, "judge": 8}
    report = status(run_cli, db)
    assert "same_as_question" not in report["dropped_by_rule"]
    assert report["kept_pairs"] == 14
    with sqlite3.connect(db) as conn:
        judged_twice = conn.execute(
            "SELECT COUNT(*) FROM (SELECT pair_id FROM judgements GROUP BY pair_id "
            "HAVING COUNT(*) > 1)").fetchone()[0]
    assert judged_twice == 0
    # Back to the defaults: the same pairs are gated again, and nothing is paid for.
    run(write_config(tmp_path))
    assert calls(db) == {"generate": 6, "judge": 8}
    assert status(run_cli, db)["kept_pairs"] == 10


def test_a_human_may_restore_a_gated_pair(tmp_path: Path,
                                          run_cli: Callable[..., CliResult]) -> None:
    run(write_config(tmp_path))
    db = tmp_path / "run.db"
    with sqlite3.connect(db) as conn:
        pair_id = conn.execute(
            "SELECT pair_id FROM pair_gates WHERE rule = 'prompt_copy' ORDER BY pair_id"
        ).fetchone()[0]
    store = Store(db)
    try:
        accept_pair(store, pair_id)
    finally:
        store.close()
    report = status(run_cli, db)
    assert report["kept_pairs"] == 11
    assert report["dropped_by_rule"]["prompt_copy"] == 5


def test_a_pair_repeated_on_many_images_is_flagged_as_a_template_not_dropped(
        tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    run(write_config(tmp_path, gates="template_images = 2"))
    report = status(run_cli, tmp_path / "run.db")
    # Every passing pair is the same on both images (the script repeats itself).
    assert report["flagged_by_rule"] == {"duplicate": 10, "ungrounded_object": 2}
    assert report["kept_pairs"] == 10


def test_a_panel_scores_with_every_member_and_combines(
        tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    six = json.dumps({"scores": [{"index": i, "score": 6, "reason": "meh"} for i in range(1, 13)]})
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps({"rules": [{"match": "^judge:", "reply": six}]}))
    models = f"""[models.strict]
backend = "scripted"
script = "{strict}"
"""
    config = write_config(tmp_path, judge='models = ["fake", "strict"]\ncombine = "min"',
                          models=models)
    run(config)
    db = tmp_path / "run.db"
    with sqlite3.connect(db) as conn:
        by_model = dict(conn.execute(
            "SELECT model, COUNT(*) FROM llm_calls WHERE stage = 'judge' GROUP BY model"))
        combined = {row[0] for row in conn.execute(
            "SELECT score FROM judgements WHERE model = 'panel:min:fake+strict'")}
    assert by_model == {"fake": 4, "strict": 4}
    assert combined == {6.0}
    assert status(run_cli, db)["kept_pairs"] == 0
    # The mean of 9 and 6 clears the threshold; the members' scores are reused, not paid again.
    run(write_config(tmp_path, judge='models = ["fake", "strict"]\ncombine = "mean"',
                     models=models))
    assert calls(db) == {"generate": 6, "judge": 8}
    assert status(run_cli, db)["kept_pairs"] == 10


def test_run_warns_once_when_the_judge_is_the_generation_model(
        tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    code, _, err = run_cli("run", "--headless", "--config", write_config(tmp_path))
    assert code == 0
    assert err.count("self-preference") == 1
    other = tmp_path / "other"
    other.mkdir()
    judge_script = other / "judge.json"
    judge_script.write_text(json.dumps({"rules": [{"match": "^judge:", "reply": ALL_NINE}]}))
    config = write_config(other, judge='model = "other"', models=f"""[models.other]
backend = "scripted"
script = "{judge_script}"
""")
    code, _, err = run_cli("run", "--headless", "--config", config)
    assert code == 0
    assert "self-preference" not in err
