"""`visinstruct analyze` end to end: on a scripted run over the sample data and on LLaVA-Bench."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from visinstruct.core.store.database import Store
from visinstruct.core.store.queries import status_counts

CliResult = tuple[int, str, str]
REPORT_FILES = {"report.md", "report.html", "figures.json", "answer_lengths.png",
                "question_types.png", "judge_scores.png", "grounding.png", "diversity.png"}
TASK_OF = {"conv": "conversation", "detail": "detail", "complex": "complex_reasoning"}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def llava_bench_store(path: Path, bench: Path, *, baseline: bool = True) -> Path:
    """LLaVA-Bench (COCO) in a store: captions and boxes of 80 images, the qa90 GPT-4 answers
    as the baseline, and the 30x3 GPT-4 records standing in for our generations."""
    store = Store(path)

    def fill(conn: sqlite3.Connection) -> None:
        for record in _jsonl(bench / "caps_boxes_coco2014_val_80.jsonl"):
            image_id = int(record["id"])
            conn.execute("INSERT INTO images (id, file_name, width, height, split) "
                         "VALUES (?, ?, 640, 480, 'val2014')", (image_id, record["image"]))
            conn.executemany("INSERT INTO captions (image_id, idx, text) VALUES (?, ?, ?)",
                             [(image_id, i, c) for i, c in enumerate(record["captions"])])
            conn.executemany(
                "INSERT INTO boxes (image_id, idx, category, x1, y1, x2, y2) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(image_id, i, box["category"], *box["bbox"])
                 for i, box in enumerate(record["instances"])])
        if baseline:
            answers = {a["question_id"]: a["text"]
                       for a in _jsonl(bench / "qa90_gpt4_answer.jsonl")}
            for question in _jsonl(bench / "qa90_questions.jsonl"):
                conn.execute(
                    "INSERT INTO baseline_conversations (image_id, task, record_id, pairs) "
                    "VALUES (?, ?, ?, ?)",
                    (int(question["image"].split(".")[0]), TASK_OF[question["category"]],
                     str(question["question_id"]),
                     json.dumps([[question["text"], answers[question["question_id"]]]])))
        for number, record in enumerate(_jsonl(bench / "coco2014_val_gpt4_qa_30x3.jsonl")):
            image_id = int(record["image"].rsplit("_", 1)[1].split(".")[0])
            gen_id = conn.execute(
                "INSERT INTO generations (image_id, task, prompt_version, model, status, "
                "created_at) VALUES (?, ?, 'fixture', 'gpt4', 'ok', 0)",
                (image_id, TASK_OF[record["type"]])).lastrowid
            pair_id = conn.execute(
                "INSERT INTO pairs (generation_id, idx, question, answer) VALUES (?, 0, ?, ?)",
                (gen_id, record["instruction"], record["output"])).lastrowid
            conn.execute("INSERT INTO judgements (pair_id, generation_id, score, prompt_version, "
                         "model, created_at) VALUES (?, ?, ?, 'j', 'm', 0)",
                         (pair_id, gen_id, 4 + number % 7))
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('judge_threshold', '7')")

    store.write_sync(fill)
    store.close()
    return path


def _figures(out: Path) -> dict:
    assert {p.name for p in out.iterdir()} == REPORT_FILES
    return json.loads((out / "figures.json").read_text())


def test_analyze_after_a_scripted_run_on_the_sample_data(
        tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    config = tmp_path / "run.toml"
    config.write_text('db = "sample.db"\n[generation]\nmodel = "fake"\n[judge]\nmodel = "fake"\n'
                      '[models.fake]\nbackend = "scripted"\n')
    code, _out, err = run_cli("run", "--headless", "--config", config)
    assert code == 0, err
    out = tmp_path / "report"
    code, stdout, err = run_cli("analyze", "--db", tmp_path / "sample.db", "--out", out)
    assert code == 0, err
    assert {Path(line).name for line in stdout.splitlines()} == REPORT_FILES
    figures = _figures(out)
    with Store(tmp_path / "sample.db") as store:
        counts = status_counts(store, 7)
    assert figures["images"] == 24 and figures["threshold"] == 7
    assert figures["present"] == {"ours": True, "generated": True, "baseline": True}
    assert figures["datasets"]["ours"]["all"]["pairs"] == counts["kept_pairs"]
    assert figures["datasets"]["generated"]["all"]["pairs"] == counts["pairs"]
    assert figures["judge"]["pairs"] == counts["pairs"]
    assert sum(figures["judge"]["histogram"].values()) == counts["pairs"]
    ours_sample = figures["datasets"]["ours"]["all"]["diversity"]["sample_tokens"]
    assert ours_sample == figures["datasets"]["baseline"]["all"]["diversity"]["sample_tokens"] > 0
    report = (out / "report.md").read_text()
    for section in ("## Counts", "## Question types", "## Lexical diversity",
                    "## Near-duplicate questions", "## Grounding", "## Judge scores"):
        assert section in report


def test_analyze_llava_bench(tmp_path: Path, real_data: Path,
                             run_cli: Callable[..., CliResult]) -> None:
    db = llava_bench_store(tmp_path / "bench.db", real_data / "llava" / "llava_bench_coco")
    out = tmp_path / "report"
    code, _stdout, err = run_cli("analyze", "--db", db, "--out", out)
    assert code == 0, err
    figures = _figures(out)
    baseline, ours = figures["datasets"]["baseline"], figures["datasets"]["ours"]
    assert (figures["images"], figures["images_with_boxes"]) == (80, 77)
    # The baseline counts only on the images ours covers: both sides describe the same images.
    with sqlite3.connect(db) as conn:
        shared = conn.execute(
            "SELECT task, COUNT(*), COUNT(DISTINCT image_id) FROM baseline_conversations "
            "WHERE image_id IN (SELECT image_id FROM generations) GROUP BY task").fetchall()
    by_task = {task: n for task, n, _images in shared}
    assert [baseline[t]["pairs"] for t in TASK_OF.values()] == [
        by_task.get(t, 0) for t in TASK_OF.values()]
    assert 0 < baseline["all"]["images"] < 30  # qa90 covers images ours (30x3) does not
    # Scores 4..10 in turn over the 90 records (12 rounds, then 4..9); 7 and up are kept.
    assert figures["datasets"]["generated"]["all"]["pairs"] == 90
    assert ours["all"]["pairs"] == figures["judge"]["kept"] == 12 * 4 + 3
    # Detail questions are requests ("Describe ...") or ask "What do you see ...".
    detail_types = baseline["detail"]["question_types"]
    assert detail_types["describe"] + detail_types["what"] == by_task["detail"]
    assert detail_types["describe"] > by_task["detail"] / 2
    for dataset in (baseline, ours):
        grounding = dataset["all"]["grounding"]
        # GPT-4 wrote from these very boxes: it names mostly objects that are there.
        assert grounding["mentions"] > 100
        assert 0 < grounding["chair_i"] < 0.25
    assert "Baseline absent" not in (out / "report.md").read_text()


def test_threshold_from_set_overrides_the_runs(tmp_path: Path, real_data: Path,
                                               run_cli: Callable[..., CliResult]) -> None:
    db = llava_bench_store(tmp_path / "bench.db", real_data / "llava" / "llava_bench_coco")
    out = tmp_path / "report"
    code, _stdout, err = run_cli("analyze", "--db", db, "--set", "judge.threshold=9", "--out", out)
    assert code == 0, err
    figures = _figures(out)
    assert figures["threshold"] == 9
    assert figures["judge"]["kept"] == 12 * 2 + 1   # scores 9 and 10


def test_without_baseline_the_report_shows_ours_only(tmp_path: Path, real_data: Path,
                                                     run_cli: Callable[..., CliResult]) -> None:
    db = llava_bench_store(tmp_path / "bench.db", real_data / "llava" / "llava_bench_coco",
                           baseline=False)
    out = tmp_path / "report"
    code, _stdout, err = run_cli("analyze", "--db", db, "--out", out)
    assert code == 0, err
    assert _figures(out)["present"]["baseline"] is False
    report = (out / "report.md").read_text()
    assert "Baseline absent" in report
    assert "baseline:" not in report


def test_refuses_a_missing_store_an_empty_store_and_a_file_as_out(
        tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    code, _out, err = run_cli("analyze", "--db", tmp_path / "none.db", "--out", tmp_path / "r")
    assert code == 2 and "no such store" in err
    Store(tmp_path / "empty.db").close()
    code, _out, err = run_cli("analyze", "--db", tmp_path / "empty.db", "--out", tmp_path / "r")
    assert code == 2 and "holds no images" in err
    (tmp_path / "file").write_text("x")
    code, _out, err = run_cli("analyze", "--db", tmp_path / "empty.db", "--out", tmp_path / "file")
    assert code == 2 and "not a folder" in err
    assert not (tmp_path / "r").exists()
