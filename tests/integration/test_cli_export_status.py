"""`visinstruct export` and `status` after a scripted headless run: shape, threshold, human
reviews."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from visinstruct.core.errors import ExitCode
from visinstruct.core.export.validate import validate_llava_file
from visinstruct.core.records import TASKS
from visinstruct.core.store.database import Store
from visinstruct.dataset import sample

CliResult = tuple[int, str, str]
RunCli = Callable[..., CliResult]
Conversations = dict[tuple[int, str], list[tuple[str, str]]]

SAMPLE_IMAGES = 24
RUN_THRESHOLD = 7


def scripted_run(run_cli: RunCli, folder: Path) -> Path:
    """Run the whole pipeline headless on the bundled sample with the scripted model; the store."""
    config = folder / "run.toml"
    config.write_text(
        'db = "run.db"\n'
        "[source]\n"
        f'coco_captions = "{sample.captions_path()}"\n'
        f'coco_instances = "{sample.instances_path()}"\n'
        '[generation]\nmodel = "fake"\n'
        f'[judge]\nmodel = "fake"\nthreshold = {RUN_THRESHOLD}\n'
        '[models.fake]\nbackend = "scripted"\nmax_in_flight = 4\n',
        encoding="utf-8",
    )
    code, _, err = run_cli("run", "--headless", "--json", "--config", config)
    assert code == ExitCode.OK, err
    return folder / "run.db"


def count_calls(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        calls: int = conn.execute("SELECT COUNT(*) FROM llm_calls").fetchone()[0]
    conn.close()
    return calls


def scored_pairs(db: Path) -> list[dict[str, Any]]:
    """Every generated pair with its image, task, position and judge score, from the raw tables."""
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT p.id, g.image_id, g.task, p.idx, p.question, p.answer, j.score "
            "FROM pairs p JOIN generations g ON g.id = p.generation_id "
            "JOIN judgements j ON j.pair_id = p.id WHERE g.status = 'ok' "
            "ORDER BY g.image_id, g.task, p.idx").fetchall()
        result = [dict(row) for row in rows]
    conn.close()
    return result


def expected_conversations(pairs: list[dict[str, Any]], threshold: float) -> Conversations:
    kept: Conversations = defaultdict(list)
    for pair in pairs:
        if pair["score"] is not None and pair["score"] >= threshold:
            kept[(pair["image_id"], pair["task"])].append((pair["question"], pair["answer"]))
    return dict(kept)


def record_pairs(record: dict[str, Any]) -> list[tuple[str, str]]:
    turns = record["conversations"]
    first = turns[0]["value"]
    assert first.startswith("<image>\n")
    texts = [first.removeprefix("<image>\n"), *(t["value"] for t in turns[1:])]
    return list(zip(texts[0::2], texts[1::2], strict=True))


def read_jsonl(path: Path) -> Conversations:
    exported: Conversations = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        key = (int(record["id"]), record["task"])
        assert key not in exported
        exported[key] = record_pairs(record)
    return exported


def export_jsonl(run_cli: RunCli, db: Path, out: Path, *extra: object) -> Conversations:
    code, stdout, err = run_cli("export", "--db", db, "--format", "jsonl", "--out", out, *extra)
    assert code == ExitCode.OK, err
    assert stdout.strip() == str(out)
    return read_jsonl(out)


def add_review(db: Path, pair_id: int, decision: str, question: str | None = None,
               answer: str | None = None) -> None:
    with Store(db) as store:
        store.write_sync(lambda c: c.execute(
            "INSERT INTO reviews (pair_id, decision, question, answer, created_at) "
            "VALUES (?, ?, ?, ?, ?)", (pair_id, decision, question, answer, time.time())))


# -- status ---------------------------------------------------------------------------------------

def test_status_after_a_run_counts_everything(run_cli: RunCli, tmp_path: Path) -> None:
    db = scripted_run(run_cli, tmp_path)
    code, out, err = run_cli("status", "--db", db, "--json")
    assert code == ExitCode.OK, err
    report = json.loads(out)
    pairs = scored_pairs(db)
    assert report["images"] == SAMPLE_IMAGES
    assert report["conversations"] == SAMPLE_IMAGES * len(TASKS)
    assert report["calls"] == 2 * SAMPLE_IMAGES * len(TASKS)  # one generation, one judge call each
    assert report["failed_calls"] == 0 and report["parse_failures"] == 0
    assert report["pairs"] == len(pairs)
    assert report["kept_pairs"] == sum(1 for p in pairs if p["score"] >= RUN_THRESHOLD)
    assert 0 < report["kept_pairs"] < report["pairs"]
    assert report["threshold"] == RUN_THRESHOLD
    assert report["last_run"]["status"] == "finished"
    for key in ("cost_usd", "cost_per_kept_pair_usd", "projected_cost_usd"):
        assert key in report
    # The scripted table names no model id and no licence: null, as for one not recorded.
    assert report["models"] == {
        "fake": {"roles": ["generation", "judge"], "model_id": None, "license": None}}
    code, out, _ = run_cli("status", "--db", db, "--json", "--threshold", "10")
    assert code == ExitCode.OK
    assert json.loads(out)["kept_pairs"] == sum(1 for p in pairs if p["score"] >= 10)
    # No blind review yet: the key is there, n is 0 and every figure is null.
    agreement = report["judge_agreement"]
    assert agreement["n"] == 0
    assert all(agreement[k] is None for k in ("kappa", "spearman", "precision", "recall"))


def test_status_reports_judge_agreement_from_blind_decisions(run_cli: RunCli,
                                                             tmp_path: Path) -> None:
    from visinstruct.core.review.blind import record_blind_decision

    db = scripted_run(run_cli, tmp_path)
    pairs = scored_pairs(db)[:6]
    # Accept exactly what the judge keeps, except the first pair: kappa from the 2x2 table.
    verdicts = [(p["score"] >= RUN_THRESHOLD) != (n == 0) for n, p in enumerate(pairs)]
    with Store(db) as store:
        for pair, accepted in zip(pairs, verdicts, strict=True):
            record_blind_decision(store, pair["id"], "accept" if accepted else "reject")
    add_review(db, pairs[1]["id"], "reject")   # not blind: never counted
    code, out, err = run_cli("status", "--db", db, "--json")
    assert code == ExitCode.OK, err
    agreement = json.loads(out)["judge_agreement"]
    kept = [p["score"] >= RUN_THRESHOLD for p in pairs]
    n = len(pairs)
    observed = sum(k == a for k, a in zip(kept, verdicts, strict=True)) / n
    pk, pa = sum(kept) / n, sum(verdicts) / n
    chance = pk * pa + (1 - pk) * (1 - pa)
    assert agreement["n"] == n
    assert agreement["kappa"] == pytest.approx((observed - chance) / (1 - chance))
    low, high = agreement["kappa_ci"]
    assert -1 <= low <= high <= 1


# -- export ---------------------------------------------------------------------------------------

def test_llava_export_is_valid_and_holds_the_kept_pairs(run_cli: RunCli, tmp_path: Path) -> None:
    db = scripted_run(run_cli, tmp_path)
    out = tmp_path / "export" / "out.json"
    code, stdout, err = run_cli("export", "--db", db, "--format", "llava", "--out", out)
    assert code == ExitCode.OK, err
    assert stdout.strip() == str(out)
    report = validate_llava_file(out)
    assert report.ok, report.summary()
    records = json.loads(out.read_text(encoding="utf-8"))
    expected = expected_conversations(scored_pairs(db), RUN_THRESHOLD)
    assert report.records == len(records) == len(expected)
    assert sorted(map(tuple, (record_pairs(r) for r in records))) == sorted(
        tuple(v) for v in expected.values())
    assert {r["image"] for r in records} == {
        f"coco/train2017/{image_id:012d}.jpg" for image_id, _ in expected}
    assert f"{len(records)} conversations" in err


def test_jsonl_export_carries_task_and_provenance(run_cli: RunCli, tmp_path: Path) -> None:
    db = scripted_run(run_cli, tmp_path)
    out = tmp_path / "out.jsonl"
    exported = export_jsonl(run_cli, db, out)
    assert exported == expected_conversations(scored_pairs(db), RUN_THRESHOLD)
    first = json.loads(out.read_text().splitlines()[0])
    assert first["task"] in TASKS
    assert first["model"] == "fake" and first["prompt_version"]


def test_a_higher_threshold_refilters_without_new_calls(run_cli: RunCli, tmp_path: Path) -> None:
    db = scripted_run(run_cli, tmp_path)
    calls_before = count_calls(db)
    pairs = scored_pairs(db)
    at_run = export_jsonl(run_cli, db, tmp_path / "at7.jsonl")
    strict = export_jsonl(run_cli, db, tmp_path / "at10.jsonl", "--threshold", "10")
    lenient = export_jsonl(run_cli, db, tmp_path / "at1.jsonl", "--threshold", "1")
    assert count_calls(db) == calls_before
    assert strict == expected_conversations(pairs, 10)
    assert lenient == expected_conversations(pairs, 1)
    assert sum(map(len, strict.values())) < sum(map(len, at_run.values())) < sum(
        map(len, lenient.values()))
    code, _, err = run_cli("export", "--db", db, "--out", tmp_path / "at10.json",
                           "--threshold", "10")
    assert code == ExitCode.OK, err
    assert validate_llava_file(tmp_path / "at10.json").ok


def test_human_reviews_win_over_scores(run_cli: RunCli, tmp_path: Path) -> None:
    db = scripted_run(run_cli, tmp_path)
    pairs = scored_pairs(db)
    kept = [p for p in pairs if p["score"] >= RUN_THRESHOLD]
    low = [p for p in pairs if p["score"] < RUN_THRESHOLD]
    rejected, edited, accepted = kept[0], kept[-1], low[0]
    add_review(db, rejected["id"], "reject")
    add_review(db, edited["id"], "edit", "Which colour is the kettle? (edited)",
               "It is a dark green enamel kettle. (edited)")
    add_review(db, accepted["id"], "accept")
    calls_before = count_calls(db)

    exported = export_jsonl(run_cli, db, tmp_path / "reviewed.jsonl")

    for pair in pairs:
        if pair["id"] == rejected["id"]:
            pair["score"] = 0
        elif pair["id"] == accepted["id"]:
            pair["score"] = 10
        elif pair["id"] == edited["id"]:
            pair["question"] = "Which colour is the kettle? (edited)"
            pair["answer"] = "It is a dark green enamel kettle. (edited)"
    assert exported == expected_conversations(pairs, RUN_THRESHOLD)
    assert count_calls(db) == calls_before
    # A human accept keeps the pair even above a threshold its score does not reach.
    strict = export_jsonl(run_cli, db, tmp_path / "strict.jsonl", "--threshold", "10")
    assert (accepted["question"], accepted["answer"]) in strict[
        (accepted["image_id"], accepted["task"])]
    code, _, err = run_cli("export", "--db", db, "--out", tmp_path / "reviewed.json")
    assert code == ExitCode.OK, err
    assert validate_llava_file(tmp_path / "reviewed.json").ok


def test_the_latest_review_decision_wins(run_cli: RunCli, tmp_path: Path) -> None:
    db = scripted_run(run_cli, tmp_path)
    pair = next(p for p in scored_pairs(db) if p["score"] >= RUN_THRESHOLD)
    key, text = (pair["image_id"], pair["task"]), (pair["question"], pair["answer"])
    add_review(db, pair["id"], "reject")
    assert text not in export_jsonl(run_cli, db, tmp_path / "a.jsonl").get(key, [])
    add_review(db, pair["id"], "accept")
    assert text in export_jsonl(run_cli, db, tmp_path / "b.jsonl")[key]


def test_export_of_a_store_without_a_run_is_an_empty_valid_file(
    run_cli: RunCli, tmp_path: Path
) -> None:
    db = tmp_path / "store.db"
    assert run_cli("prepare", "--db", db, "--coco-captions", sample.captions_path())[0] == 0
    out = tmp_path / "out.json"
    code, _, err = run_cli("export", "--db", db, "--out", out)
    assert code == ExitCode.OK, err
    assert json.loads(out.read_text()) == []
    assert validate_llava_file(out).ok


# -- refusals -------------------------------------------------------------------------------------

def assert_one_line_naming(err: str, *names: object) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for name in names:
        assert str(name) in lines[0], lines[0]


@pytest.fixture
def small_store(run_cli: RunCli, tmp_path: Path) -> Path:
    """A store holding the bundled sample images and nothing generated yet."""
    db = tmp_path / "small.db"
    assert run_cli("prepare", "--db", db, "--coco-captions", sample.captions_path())[0] == 0
    return db


def _file_in_the_way(tmp: Path) -> tuple[Path, Path]:
    blocker = tmp / "taken"
    blocker.write_text("not a folder")
    return blocker / "out.json", blocker / "out.json"


def _a_directory(tmp: Path) -> tuple[Path, Path]:
    folder = tmp / "outdir"
    folder.mkdir()
    return folder, folder


@pytest.mark.parametrize("make", [_file_in_the_way, _a_directory],
                         ids=["file-in-the-way", "directory"])
def test_an_unwritable_output_path_is_refused(
    make: Callable[[Path], tuple[Path, Path]], run_cli: RunCli, small_store: Path, tmp_path: Path
) -> None:
    out, named = make(tmp_path)
    code, stdout, err = run_cli("export", "--db", small_store, "--out", out)
    assert code == ExitCode.BAD_INPUT and stdout == ""
    assert_one_line_naming(err, named)
    assert list(tmp_path.glob(".out.json*")) == []


def test_an_unwritable_folder_is_refused_without_touching_it(
    run_cli: RunCli, small_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests may run as root, where permission bits are not enforced: refuse by os.access instead.
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == locked
                        else real_access(p, mode, **kw))
    code, _, err = run_cli("export", "--db", small_store, "--out", locked / "out.json")
    assert code == ExitCode.BAD_INPUT
    assert_one_line_naming(err, locked / "out.json")
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize("threshold", ["11", "0", "nan"])
def test_export_threshold_out_of_range(
    threshold: str, run_cli: RunCli, small_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.json"
    code, stdout, err = run_cli("export", "--db", small_store, "--out", out,
                                "--threshold", threshold)
    assert code == ExitCode.BAD_INPUT and stdout == ""
    assert_one_line_naming(err, "--threshold")
    assert not out.exists()


def test_export_from_a_missing_store(run_cli: RunCli, tmp_path: Path) -> None:
    db = tmp_path / "missing.db"
    code, _, err = run_cli("export", "--db", db, "--out", tmp_path / "out.json")
    assert code == ExitCode.BAD_INPUT
    assert_one_line_naming(err, db)
    assert not db.exists() and not (tmp_path / "out.json").exists()


def test_an_unknown_format_is_refused_by_the_parser(
    run_cli: RunCli, small_store: Path, tmp_path: Path
) -> None:
    code, _, err = run_cli("export", "--db", small_store, "--format", "parquet", "--out",
                           tmp_path / "out.parquet")
    assert code == ExitCode.BAD_INPUT
    assert "parquet" in err
