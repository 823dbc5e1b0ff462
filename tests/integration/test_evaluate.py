"""`evaluate` end to end: real GPT-4 baseline answers and COCO context, a fake Bedrock Claude.

The evaluator's replies are scripted per (image, task) and per order, in every format the
parser accepts and in the ways evaluators go wrong, so the figures can be worked out by hand.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from tests.conftest import REAL_DATA
from tests.fakes.aws import aws_env
from tests.fakes.bedrock_server import BedrockServer
from tests.fakes.scripting import RecordedRequest, Reply, Script
from visinstruct.core.config import Config, load_config
from visinstruct.core.evaluation.evaluate import EvaluationReport, evaluate
from visinstruct.core.events import EvaluationNotice, Event
from visinstruct.core.store.database import Store, now
from visinstruct.dataset.llava import read_mix665k

BENCH = REAL_DATA / "llava" / "llava_bench_coco"
MODEL_ID = "anthropic.claude-3-5-sonnet-20240620-v1:0"
CATEGORY = {"conv": "conversation", "detail": "detail", "complex": "complex_reasoning"}
TASKS = ("conversation", "detail", "complex_reasoning")
A, B, C, D = 441147, 353536, 506095, 514915

# (reply when our answer is shown first, reply when the baseline's is), as Assistant 1, 2.
REPLIES: dict[tuple[int, str], tuple[str, str]] = {
    (A, "conversation"): ("8 6\nThe first answer is more complete.",
                          "7, 8\nThe second answer covers more."),
    (A, "detail"): ('{"scores": [7, 7], "rationale": "Both are equally good."}',
                    '{"assistant_1": 8, "assistant_2": 6}'),
    (A, "complex_reasoning"): ("Assistant 1: 9\nIt reasons well.\nAssistant 2: 5\nIt is vague.",
                               "Assistant 1: 6\nReasonable.\nAssistant 2: 8\nThorough."),
    (B, "conversation"): ("I'm sorry, but I can't help with comparing these responses.",
                          "6 6\nEqually good."),
    (B, "detail"): ("7\nThe first is good.", "11 4\nThe first is excellent."),
    (B, "complex_reasoning"): ("9 7\nThe first is sharper.", "8 8\nEqually sharp."),
    (C, "conversation"): ("Both assistants answer well, but the first gives more detail.",
                          "The second assistant is more accurate than the first."),
    (C, "detail"): ("5 9\nThe second is richer.", "9, 3\nThe first is far richer."),
    (C, "complex_reasoning"): ("8 8\nA tie.", "7 7\nA tie."),
}
# Worked out by hand in tests/unit/test_aggregate.py, which aggregates the same verdicts.
EXPECTED_OVERALL = {"relative_score": 98.99, "wins": 3, "ties": 2, "losses": 2, "n": 7,
                    "position_bias": 0.75, "unparsed": 5}
EXPECTED_BY_TASK = {
    "conversation": {"relative_score": 112.0, "wins": 1, "ties": 1, "losses": 0, "n": 2,
                     "position_bias": 0.5, "unparsed": 3},
    "detail": {"relative_score": 63.64, "wins": 0, "ties": 0, "losses": 2, "n": 2,
               "position_bias": 1.0, "unparsed": 2},
    "complex_reasoning": {"relative_score": 119.51, "wins": 2, "ties": 1, "losses": 0, "n": 3,
                          "position_bias": 0.667, "unparsed": 0},
}


# --- the real fixtures ------------------------------------------------------------------------


def bench() -> dict[int, dict[str, Any]]:
    """Per image: captions, boxes and the GPT-4 question and answer of each task."""
    images: dict[int, dict[str, Any]] = {}
    for line in (BENCH / "caps_boxes_coco2014_val_80.jsonl").read_text().splitlines():
        record = json.loads(line)
        images[int(record["id"])] = {"captions": record["captions"],
                                     "boxes": record["instances"], "qa": {}}
    answers = {a["question_id"]: a["text"] for a in map(
        json.loads, (BENCH / "qa90_gpt4_answer.jsonl").read_text().splitlines())}
    for line in (BENCH / "qa90_questions.jsonl").read_text().splitlines():
        question = json.loads(line)
        image_id = int(question["image"].split(".")[0])
        images[image_id]["qa"][CATEGORY[question["category"]]] = (
            question["question_id"], question["text"], answers[question["question_id"]])
    return images


BENCH_DATA = bench()


def mix665k_records(image_ids: list[int], merge_turns: int | None = None) -> list[dict[str, Any]]:
    """The GPT-4 answers as llava_v1_5_mix665k.json records; `merge_turns` makes that image's
    conversation record two turns long (its conversation and complex questions)."""
    records = []
    for image_id in image_ids:
        qa = BENCH_DATA[image_id]["qa"]
        for task in TASKS:
            qid, question, answer = qa[task]
            turns = [(question, answer)]
            if task == "conversation" and image_id == merge_turns:
                turns.append(qa["complex_reasoning"][1:])
            conversations = []
            for number, (q, a) in enumerate(turns):
                prefix = "" if number else "<image>\n"
                conversations += [{"from": "human", "value": prefix + q},
                                  {"from": "gpt", "value": a}]
            records.append({"id": str(qid), "image": f"coco/train2017/{image_id:012d}.jpg",
                            "conversations": conversations})
    return records


def our_pairs(image_id: int, task: str) -> list[tuple[str, str, float]]:
    """Our conversation for an (image, task): (question, answer, judge score); 3 is dropped."""
    captions = [c.strip() for c in BENCH_DATA[image_id]["captions"]]
    if task == "conversation":
        return [("What is in the picture?", captions[0], 9),
                ("DROPPED question about the picture?", "DROPPED answer.", 3),
                ("Is there anything else worth noticing?", captions[1], 8)]
    if task == "detail":
        return [("Describe the image in detail.", " ".join(captions[:3]), 8)]
    return [("What might explain this scene?", f"Most likely this: {captions[2]}", 7)]


def build_store(path: Path, tmp_path: Path, *, ours: list[int], baseline: list[int],
                merge_turns: int | None = None) -> None:
    """A store holding the real context, our judged conversations and the baseline."""
    mix = tmp_path / "llava_v1_5_mix665k.json"
    mix.write_text(json.dumps(mix665k_records(baseline, merge_turns)))
    conversations = list(read_mix665k(mix))
    assert {(c.image_id, c.task) for c in conversations} == {
        (i, t) for i in baseline for t in TASKS}

    def work(conn: sqlite3.Connection) -> None:
        for image_id in sorted(set(ours) | set(baseline)):
            data = BENCH_DATA[image_id]
            conn.execute("INSERT INTO images (id, file_name, width, height, split) "
                         "VALUES (?, ?, 640, 480, 'val2014')", (image_id, f"{image_id:012d}.jpg"))
            conn.executemany("INSERT INTO captions (image_id, idx, text) VALUES (?, ?, ?)",
                             [(image_id, i, c) for i, c in enumerate(data["captions"])])
            conn.executemany(
                "INSERT INTO boxes (image_id, idx, category, x1, y1, x2, y2) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(image_id, i, b["category"], *b["bbox"]) for i, b in enumerate(data["boxes"])])
        for c in conversations:
            pairs = json.dumps([[p.question, p.answer] for p in c.pairs])
            conn.execute("INSERT INTO baseline_conversations (image_id, task, record_id, pairs) "
                         "VALUES (?, ?, ?, ?)", (c.image_id, c.task, c.record_id, pairs))
        for image_id in ours:
            for task in TASKS:
                gid = conn.execute(
                    "INSERT INTO generations (image_id, task, prompt_version, model, status, raw, "
                    "problems, purpose, created_at) VALUES (?, ?, 'p-test', 'writer', 'ok', '', "
                    "'[]', 'run', ?)", (image_id, task, now())).lastrowid
                for idx, (question, answer, score) in enumerate(our_pairs(image_id, task)):
                    pid = conn.execute(
                        "INSERT INTO pairs (generation_id, idx, question, answer) "
                        "VALUES (?, ?, ?, ?)", (gid, idx, question, answer)).lastrowid
                    conn.execute("INSERT INTO judgements (pair_id, generation_id, score, reason, "
                                 "prompt_version, model, created_at) "
                                 "VALUES (?, ?, ?, 'ok', 'j-test', 'writer', ?)",
                                 (pid, gid, score, now()))

    with Store(path) as store:
        store.write_sync(work)


# --- the fake evaluator -----------------------------------------------------------------------


def prompt_of(request: RecordedRequest) -> str:
    return "".join(block["text"] for block in request.json["messages"][0]["content"]
                   if block["type"] == "text")


def pictures_in(request: RecordedRequest) -> int:
    return sum(block["type"] == "image" for block in request.json["messages"][0]["content"])


def shown(request: RecordedRequest) -> tuple[tuple[int, str], str]:
    """Which (image, task) the request compares and whose answer it shows first."""
    text = prompt_of(request)
    first = text.split("Response of Assistant 1:", 1)[1].split("(end of Assistant 1)", 1)[0]
    for image_id, data in BENCH_DATA.items():
        for task, (_, _, answer) in data["qa"].items():
            if answer[:80] in text:
                return (image_id, task), ("baseline" if answer[:80] in first else "ours")
    raise AssertionError("the request shows no GPT-4 answer")


def scripted(request: RecordedRequest) -> Reply:
    unit, first = shown(request)
    ours_first, baseline_first = REPLIES[unit]
    return Reply(ours_first if first == "ours" else baseline_first)


@pytest.fixture(name="fake")
def fake_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[BedrockServer]:
    with BedrockServer(Script(Reply("7 7\nEqually good.")), model_ids=[MODEL_ID]) as server:
        aws_env(monkeypatch, bedrock_url=server.url)
        yield server


def write_config(tmp_path: Path, *, images_dir: Path | None = None, sample: int = 0,
                 seed: int = 0) -> Path:
    source = f'[source]\nimages_dir = "{images_dir}"\n' if images_dir else ""
    path = tmp_path / "run.toml"
    path.write_text(f"""
db = "{tmp_path / 'store.db'}"
{source}
[generation]
model = "writer"
[judge]
model = "writer"
threshold = 7
[evaluation]
model = "claude"
sample = {sample}
seed = {seed}
[models.writer]
backend = "scripted"
[models.claude]
backend = "bedrock"
model_id = "{MODEL_ID}"
max_in_flight = 4
attempts = 1
read_timeout = 10
""")
    return path


@pytest.fixture(name="scenario")
def scenario_fixture(tmp_path: Path, fake: BedrockServer) -> Config:
    """Images A, B and C with ours and the baseline; the evaluator scripted by REPLIES."""
    build_store(tmp_path / "store.db", tmp_path, ours=[A, B, C], baseline=[A, B, C])
    fake.script.on(MODEL_ID, scripted)
    return load_config(write_config(tmp_path))


def run(config: Config, events: list[Event] | None = None,
        cancel: threading.Event | None = None, **options: Any) -> EvaluationReport:
    with Store(config.db) as store:
        return evaluate(config, store, (events.append if events is not None else lambda e: None),
                        cancel, **options)


def figures(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in EXPECTED_OVERALL}


def stored(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


# --- tests ---------------------------------------------------------------------------------------


def test_json_figures_match_the_hand_computation_and_a_rerun_sends_nothing(
        scenario: Config, fake: BedrockServer, run_cli: Callable[..., Any], tmp_path: Path) -> None:
    code, out, err = run_cli("evaluate", "--config", tmp_path / "run.toml", "--json")

    assert code == 0, err
    result = json.loads(out)
    assert figures(result["overall"]) == EXPECTED_OVERALL
    for task, expected in EXPECTED_BY_TASK.items():
        assert figures(result["by_task"][task]) == expected
    overall = result["overall"]
    assert overall["ci_low"] <= overall["relative_score"] <= overall["ci_high"]
    assert result["mode"] == "conversation" and result["missing_images"] == 0
    # Three images x three tasks x two orders, every order asked once.
    assert fake.script.count(MODEL_ID) == 18
    orders = [shown(r) for r in fake.script.requests(MODEL_ID)]
    assert sorted(orders) == sorted((unit, first) for unit in REPLIES
                                    for first in ("ours", "baseline"))
    # Only kept pairs are ours; the GPT-4 answer is shown whole.
    assert not any("DROPPED" in prompt_of(r) for r in fake.script.requests(MODEL_ID))

    code, again, _ = run_cli("evaluate", "--config", tmp_path / "run.toml", "--json")

    assert code == 0
    assert fake.script.count(MODEL_ID) == 18
    assert json.loads(again)["overall"] == overall


def test_every_verdict_is_stored_with_scores_mapped_back_and_unparsed_text_kept(
        scenario: Config) -> None:
    report = run(scenario)

    rows = {(r[0], r[1], r[2]): r[3:] for r in stored(
        scenario.db, "SELECT image_id, task, shown_first, ours_score, baseline_score, parsed, "
        "rationale FROM evaluations")}
    assert len(rows) == 18 and report.verdicts == 18
    # "7, 8" with the baseline first: the baseline got 7 and ours 8.
    assert rows[A, "conversation", "baseline"][:3] == (8, 7, 1)
    assert rows[A, "conversation", "ours"] == (8, 6, 1, "The first answer is more complete.")
    assert rows[B, "conversation", "ours"] == (
        None, None, 0, "I'm sorry, but I can't help with comparing these responses.")
    assert rows[B, "detail", "baseline"] == (None, None, 0, "11 4\nThe first is excellent.")
    assert sum(r[2] for r in rows.values()) == 13
    calls = stored(scenario.db, "SELECT stage, status, COUNT(*) FROM llm_calls GROUP BY 1, 2")
    assert calls == [("evaluate", "ok", 18)]
    assert report.overall.relative_score == 98.99
    assert report.by_task["detail"].relative_score == 63.64


def test_a_cancelled_evaluation_resumes_without_sending_a_finished_call_again(
        scenario: Config, fake: BedrockServer) -> None:
    cancel = threading.Event()

    def stop_after_five(request: RecordedRequest) -> Reply:
        if fake.script.count(MODEL_ID) >= 5:
            cancel.set()
        return scripted(request)

    fake.script.on(MODEL_ID, stop_after_five)
    first = run(scenario, cancel=cancel)

    assert first.status == "interrupted"
    done = len(stored(scenario.db, "SELECT id FROM evaluations"))
    assert 5 <= done < 18
    assert fake.script.count(MODEL_ID) == done

    fake.script.on(MODEL_ID, scripted)
    second = run(scenario)

    assert second.status == "finished"
    assert fake.script.count(MODEL_ID) == 18
    assert second.new_calls == 18 - done
    assert stored(scenario.db, "SELECT key FROM llm_calls WHERE status = 'ok' "
                               "GROUP BY key HAVING COUNT(*) > 1") == []
    assert figures(second.overall.to_dict()) == EXPECTED_OVERALL


def test_the_picture_goes_with_the_request_and_a_missing_one_is_counted(
        tmp_path: Path, fake: BedrockServer) -> None:
    build_store(tmp_path / "store.db", tmp_path, ours=[A, B, C], baseline=[A, B, C])
    pictures = tmp_path / "train2017"
    pictures.mkdir()
    PILImage.new("RGB", (16, 12), (90, 60, 30)).save(pictures / f"{A:012d}.jpg", format="JPEG")
    config = load_config(write_config(tmp_path, images_dir=pictures))
    events: list[Event] = []

    report = run(config, events)

    assert report.missing_images == 2
    assert report.verdicts == 18 and report.failed_calls == 0
    seen = {A: 0, B: 0, C: 0}
    for request in fake.script.requests(MODEL_ID):
        (image_id, _), _ = shown(request)
        seen[image_id] += pictures_in(request)
    assert seen == {A: 6, B: 0, C: 0}
    notes = [e.message for e in events if isinstance(e, EvaluationNotice)]
    assert any("2 sampled image(s) could not be shown" in n and "not found" in n for n in notes)


def test_answers_mode_answers_the_baseline_questions_and_compares_both_orders(
        tmp_path: Path, fake: BedrockServer, run_cli: Callable[..., Any]) -> None:
    build_store(tmp_path / "store.db", tmp_path, ours=[A, B, C], baseline=[A, B, C],
                merge_turns=A)
    write_config(tmp_path)
    fake.script.on(MODEL_ID, lambda request: Reply("7 5\nThe first is better."))

    code, out, err = run_cli("evaluate", "--config", tmp_path / "run.toml", "--mode", "answers",
                             "--json")

    assert code == 0, err
    result = json.loads(out)
    # Ten questions (A's conversation has two turns): the first-shown answer always gets 7 and
    # the second 5, so each question averages 6 against 6 and the bias is ((7-5) + (7-5)) / 2.
    assert figures(result["overall"]) == {"relative_score": 100.0, "wins": 0, "ties": 10,
                                          "losses": 0, "n": 10, "position_bias": 2.0,
                                          "unparsed": 0}
    assert [result["by_task"][t]["n"] for t in TASKS] == [4, 3, 3]
    db = tmp_path / "store.db"
    assert stored(db, "SELECT stage, COUNT(*) FROM llm_calls WHERE status = 'ok' "
                      "GROUP BY stage ORDER BY stage") == [("answer", 10), ("evaluate", 20)]
    answers = stored(db, "SELECT p.idx, p.question, p.answer FROM pairs p JOIN generations g "
                         "ON g.id = p.generation_id WHERE g.purpose = 'answers' "
                         "AND g.image_id = ? AND g.task = 'conversation' ORDER BY p.idx", (A,))
    qa = BENCH_DATA[A]["qa"]
    assert [(i, q) for i, q, _ in answers] == [(0, qa["conversation"][1]),
                                               (1, qa["complex_reasoning"][1])]
    # The evaluator compares our answer with GPT-4's answer to the same question.
    request = next(r for r in fake.script.requests(MODEL_ID)
                   if qa["complex_reasoning"][2][:80] in prompt_of(r)
                   and qa["complex_reasoning"][1] in prompt_of(r))
    assert "Scripted answer" in prompt_of(request)
    assert "DROPPED" not in prompt_of(request)
    # Answers are not run data: they never show among our conversations.
    assert stored(db, "SELECT COUNT(*) FROM current_generations")[0][0] == 9

    code, _, _ = run_cli("evaluate", "--config", tmp_path / "run.toml", "--mode", "answers",
                         "--json")

    assert code == 0
    assert fake.script.count(MODEL_ID) == 20
    assert stored(db, "SELECT COUNT(*) FROM llm_calls")[0][0] == 30
