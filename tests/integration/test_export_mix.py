"""`export --mix`: the whole training mix from a small mix665k holding every kind of record,
interleaved, and a scripted run's kept records; its card, provenance, flags and refusals."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cli_export_status import scripted_run
from tests.mix_kinds import every_kind
from visinstruct.core.errors import ExitCode
from visinstruct.core.export.validate import check_mix_record, check_record, validate_llava_file

CliResult = tuple[int, str, str]
RunCli = Callable[..., CliResult]
ACADEMIC = ("vqav2_okvqa", "aokvqa", "refcoco", "gqa", "ocr_vqa", "textcaps", "vg")


@pytest.fixture
def run_db(run_cli: RunCli, tmp_path: Path) -> Path:
    """A scripted run's store; its model records a licence and a model id."""
    db = scripted_run(run_cli, tmp_path)
    config = tmp_path / "run.toml"
    text = config.read_text(encoding="utf-8").replace(
        'backend = "scripted"', 'backend = "scripted"\nlicense = "apache-2.0"\n'
                                'model_id = "scripted-writer-1"')
    config.write_text(text, encoding="utf-8")
    code, _, err = run_cli("run", "--headless", "--json", "--config", config)
    assert code == ExitCode.OK, err
    return db


@pytest.fixture
def mix(tmp_path: Path) -> Path:
    path = tmp_path / "llava_v1_5_mix665k.json"
    path.write_text(json.dumps([record for _, record in every_kind()], indent=1),
                    encoding="utf-8")
    return path


def ours_alone(run_cli: RunCli, db: Path, folder: Path) -> list[dict[str, Any]]:
    out = folder / "ours.json"
    code, _, err = run_cli("export", "--db", db, "--out", out)
    assert code == ExitCode.OK, err
    records: list[dict[str, Any]] = json.loads(out.read_text(encoding="utf-8"))
    assert records
    return records


def flag_one_kept_pair(db: Path) -> tuple[tuple[str, str, str], str]:
    """Mark one unflagged kept pair as a gate would flag it: (record id, task, question) of
    that pair, and the kept flagged pairs by rule as the summary should print them."""
    with sqlite3.connect(db) as conn:
        pair_id, image_id, task, question = conn.execute(
            "SELECT pair_id, image_id, task, question FROM kept_pairs "
            "WHERE task != 'short_answer' AND NOT flagged ORDER BY pair_id LIMIT 1").fetchone()
        conn.execute("INSERT INTO pair_gates (pair_id, rule, action, reason) "
                     "VALUES (?, 'ungrounded_object', 'flag', 'no cat in the boxes')", (pair_id,))
        by_rule = conn.execute(
            "SELECT x.rule, COUNT(DISTINCT x.pair_id) FROM pair_gates x JOIN kept_pairs k "
            "ON k.pair_id = x.pair_id WHERE x.action = 'flag' GROUP BY x.rule "
            "ORDER BY x.rule").fetchall()
    conn.close()
    where = (f"{image_id:012d}", str(task), str(question))
    return where, ", ".join(f"{rule} {n}" for rule, n in by_rule)


def test_the_mix_holds_each_academic_record_once_no_gpt_record_and_all_of_ours(
        run_cli: RunCli, run_db: Path, mix: Path, tmp_path: Path) -> None:
    ours = ours_alone(run_cli, run_db, tmp_path)
    out, card = tmp_path / "train" / "mix.json", tmp_path / "CARD.md"

    code, stdout, err = run_cli("export", "--db", run_db, "--mix", mix, "--out", out,
                                "--card", card)

    assert code == ExitCode.OK, err
    assert stdout.strip() == str(out)
    written = json.loads(out.read_text(encoding="utf-8"))
    academic = [record for part, record in every_kind() if part in ACADEMIC]
    assert written[:len(academic)] == academic      # each once, unchanged, in file order
    assert written[len(academic):] == ours          # then every kept record of ours
    assert all(not check_mix_record(r) for r in academic)
    assert all(not check_record(r) for r in ours)
    assert validate_llava_file(out, mix=True).ok
    assert not validate_llava_file(out).ok  # mix665k's own ids and folders break our rules
    # The table by part, and the records no rule placed, by id.
    assert "llava_instruct" in err and "sharegpt" in err
    table = {line.split()[0]: line.split()[1:] for line in err.splitlines()
             if line.startswith("  ")}
    assert table["llava_instruct"] == ["0", "6", "0"]
    assert table["sharegpt"] == ["0", "1", "0"]
    assert table["vqav2_okvqa"] == ["2", "0", "0"]
    assert table["ours"] == ["0", "0", f"{len(ours):,}"]
    assert table["total"][0] == str(len(academic))
    assert "unclassified records left out: 2; first ids: sa_10001, 000000000042" in err
    assert "malformed record left out: record" in err and "'000000000049'" in err
    # The card: a YAML header, the composition with counts and the model's licence.
    text = card.read_text(encoding="utf-8")
    header = text.split("---")[1]
    for key in ("license:", "task_categories:", "language:", "size_categories:",
                "source_datasets:", "pretty_name:"):
        assert key in header
    assert "| vqav2_okvqa | VQAv2 and OK-VQA (COCO) | people | 2 | CC-BY-4.0 (VQAv2); " \
           "unknown (OK-VQA) |" in text
    assert f"| ours | made by this project's models (below) | fake | {len(ours)} | " \
           "fake: apache-2.0 |" in text
    assert "| generation | fake | scripted-writer-1 | apache-2.0 |" in text
    assert "llava_instruct 6" in text and "sharegpt 1" in text
    assert f"--mix {mix}" in text and "## Known limitations" in text


def test_jsonl_records_carry_their_source_provenance_and_flags(
        run_cli: RunCli, run_db: Path, mix: Path, tmp_path: Path) -> None:
    (record_id, task, question), by_rule = flag_one_kept_pair(run_db)
    out = tmp_path / "mix.jsonl"

    code, _, err = run_cli("export", "--db", run_db, "--mix", mix, "--out", out,
                           "--format", "jsonl", "--keep-text-only")

    assert code == ExitCode.OK, err
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    sources = Counter(line["source"] for line in lines)
    assert {name: sources[name] for name in (*ACADEMIC, "sharegpt", "llava_instruct")} == {
        "vqav2_okvqa": 2, "aokvqa": 1, "refcoco": 1, "gqa": 1, "ocr_vqa": 1, "textcaps": 1,
        "vg": 1, "sharegpt": 1, "llava_instruct": 0}
    [text_only] = [line for line in lines if line["source"] == "sharegpt"]
    assert text_only["model"] == "" and "image" not in text_only
    ours = [line for line in lines if line["source"] == "visinstruct"]
    judged = next(line for line in ours if line["task"] != "short_answer")
    assert judged["generation"] == {"model": "fake", "model_id": "scripted-writer-1",
                                    "license": "apache-2.0"}
    assert judged["prompt_version"] and judged["judges"][0]["model"] == "fake"
    first = judged["pairs"][0]
    assert first["scores"]["fake"] == first["score"] and first["decision"] is None
    [flagged] = [line for line in ours if (line["id"], line["task"]) == (record_id, task)]
    assert "ungrounded_object" in flagged["flags"]
    assert any(pair["flags"] == ["ungrounded_object"] for pair in flagged["pairs"])
    assert f"flagged pairs written: {by_rule} (--exclude-flagged" in err

    # --exclude-flagged leaves that pair out, and says so by rule.
    code, _, err = run_cli("export", "--db", run_db, "--mix", mix, "--out", out,
                           "--format", "jsonl", "--exclude-flagged")
    assert code == ExitCode.OK, err
    text = out.read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines()]
    assert not [line for line in lines if line.get("flags")]
    assert not [line for line in lines if (line["id"], line.get("task")) == (record_id, task)
                and any(turn["value"].endswith(question) for turn in line["conversations"])]
    assert f"flagged pairs left out (--exclude-flagged): {by_rule}" in err
    assert '"source": "sharegpt"' not in text


def test_keep_unclassified_takes_in_the_records_no_rule_placed(
        run_cli: RunCli, run_db: Path, mix: Path, tmp_path: Path) -> None:
    out = tmp_path / "mix.json"
    code, _, err = run_cli("export", "--db", run_db, "--mix", mix, "--out", out,
                           "--keep-unclassified")
    assert code == ExitCode.OK, err
    ids = [record["id"] for record in json.loads(out.read_text(encoding="utf-8"))]
    assert "sa_10001" in ids and "000000000042" in ids and "i6IyJda_0" not in ids
    assert "unclassified records kept (--keep-unclassified): 2" in err


def test_hf_writes_the_card_as_the_dataset_readme(
        run_cli: RunCli, run_db: Path, mix: Path, tmp_path: Path) -> None:
    import datasets

    out = tmp_path / "hf"
    code, _, err = run_cli("export", "--db", run_db, "--mix", mix, "--out", out,
                           "--format", "hf")
    assert code == ExitCode.OK, err
    assert (out / "README.md").read_text(encoding="utf-8").startswith("---\nlicense:")
    rows = datasets.load_from_disk(str(out))
    assert Counter(rows["source"])["gqa"] == 1
    ours = [row for row in rows if row["source"] == "visinstruct"]
    assert ours and json.loads(ours[0]["provenance"])["generation"]["license"] == "apache-2.0"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize(("content", "words"), [
    (None, "no such file"),
    ("", "not a JSON array"),
    ("{\"id\": 1}", "not a JSON array"),
    ("not json at all", "not a JSON array"),
])
def test_a_missing_or_non_json_mix_exits_2_with_one_line(
        run_cli: RunCli, run_db: Path, tmp_path: Path, content: str | None, words: str) -> None:
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content, encoding="utf-8")
    out = tmp_path / "out" / "mix.json"
    code, stdout, err = run_cli("export", "--db", run_db, "--mix", bad, "--out", out)
    assert code == ExitCode.BAD_INPUT and stdout == ""
    assert len(err.strip().splitlines()) == 1 and words in err
    assert not out.exists()


@pytest.mark.parametrize("fmt", ["llava", "jsonl", "hf"])
def test_a_truncated_mix_exits_2_and_writes_nothing(
        run_cli: RunCli, run_db: Path, mix: Path, tmp_path: Path, fmt: str) -> None:
    whole = mix.read_bytes()
    mix.write_bytes(whole[: len(whole) * 2 // 3])
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "mix"
    code, stdout, err = run_cli("export", "--db", run_db, "--mix", mix, "--out", out,
                                "--format", fmt, "--card", folder / "CARD.md")
    assert code == ExitCode.BAD_INPUT and stdout == "", err
    assert len(err.strip().splitlines()) == 1 and "truncated" in err
    assert list(folder.iterdir()) == []


def test_out_on_a_fifo_or_on_the_mix_itself_is_refused(
        run_cli: RunCli, run_db: Path, mix: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    before = mix.read_bytes()
    for target, words in ((fifo, "FIFO"), (mix, "--mix file itself")):
        code, stdout, err = run_cli("export", "--db", run_db, "--mix", mix, "--out", target)
        assert code == ExitCode.BAD_INPUT and stdout == ""
        assert len(err.strip().splitlines()) == 1 and words in err
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and mix.read_bytes() == before
    code, _, err = run_cli("export", "--db", run_db, "--mix", mix, "--out",
                           tmp_path / "x.json", "--card", run_db)
    assert code == ExitCode.BAD_INPUT and "the store itself" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_exits_2_and_is_left_alone(
        run_cli: RunCli, run_db: Path, mix: Path, tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        code, _, err = run_cli("export", "--db", run_db, "--mix", mix, "--out", folder / "m.json")
    finally:
        folder.chmod(0o700)
    assert code == ExitCode.BAD_INPUT and len(err.strip().splitlines()) == 1
    assert list(folder.iterdir()) == []


def test_the_keep_flags_need_a_mix(run_cli: RunCli, run_db: Path, tmp_path: Path) -> None:
    code, _, err = run_cli("export", "--db", run_db, "--out", tmp_path / "x.json",
                           "--keep-text-only")
    assert code == ExitCode.BAD_INPUT and "need --mix" in err


def test_a_folder_it_may_not_write_exits_2_even_for_root(
        run_cli: RunCli, run_db: Path, mix: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from visinstruct.core.export import writers

    folder = tmp_path / "locked"
    folder.mkdir()
    real_access = os.access
    monkeypatch.setattr(writers.os, "access", lambda path, mode: (
        False if Path(path) == folder else real_access(path, mode)))
    code, stdout, err = run_cli("export", "--db", run_db, "--mix", mix, "--out",
                                folder / "m.json")
    assert code == ExitCode.BAD_INPUT and stdout == ""
    assert len(err.strip().splitlines()) == 1 and "not writable" in err
    assert list(folder.iterdir()) == []


def test_status_shows_each_models_id_and_licence(run_cli: RunCli, run_db: Path) -> None:
    code, stdout, err = run_cli("status", "--db", run_db, "--json")
    assert code == ExitCode.OK, err
    assert json.loads(stdout)["models"] == {"fake": {
        "roles": ["generation", "judge"], "model_id": "scripted-writer-1",
        "license": "apache-2.0"}}
    code, stdout, _ = run_cli("status", "--db", run_db)
    assert "fake (generation, judge): scripted-writer-1, licence apache-2.0" in stdout


def test_config_adds_a_licence_the_runs_did_not_record(
        run_cli: RunCli, mix: Path, tmp_path: Path) -> None:
    db = scripted_run(run_cli, tmp_path)  # its [models.fake] has no licence
    card = tmp_path / "CARD.md"
    assert run_cli("export", "--db", db, "--mix", mix, "--out", tmp_path / "a.json",
                   "--card", card)[0] == ExitCode.OK
    assert "| generation | fake | unknown | unknown |" in card.read_text(encoding="utf-8")
    given = tmp_path / "licences.toml"
    given.write_text('[models.fake]\nbackend = "scripted"\nlicense = "MIT"\n', encoding="utf-8")
    code, _, err = run_cli("export", "--db", db, "--config", given, "--mix", mix, "--out",
                           tmp_path / "b.json", "--card", card)
    assert code == ExitCode.OK, err
    assert "| generation | fake | unknown | MIT |" in card.read_text(encoding="utf-8")


def test_a_persons_decision_travels_with_its_pair(
        run_cli: RunCli, run_db: Path, tmp_path: Path) -> None:
    with sqlite3.connect(run_db) as conn:
        pair_id, image_id, task, score = conn.execute(
            "SELECT pair_id, image_id, task, score FROM pair_verdicts "
            "WHERE dropped_by = 'judge' ORDER BY pair_id LIMIT 1").fetchone()
        conn.execute("INSERT INTO reviews (pair_id, decision, created_at) "
                     "VALUES (?, 'accept', 0)", (pair_id,))
    conn.close()
    out = tmp_path / "ours.jsonl"
    assert run_cli("export", "--db", run_db, "--format", "jsonl", "--out", out)[0] == 0
    [record] = [line for line in map(json.loads, out.read_text(encoding="utf-8").splitlines())
                if (line["id"], line["task"]) == (f"{image_id:012d}", task)]
    assert {"score": score, "decision": "accept"}.items() <= next(
        pair for pair in record["pairs"] if pair["decision"]).items()


def test_the_mix_to_stdout_is_the_same_as_to_a_file(
        run_cli: RunCli, run_db: Path, mix: Path, tmp_path: Path) -> None:
    out = tmp_path / "mix.json"
    assert run_cli("export", "--db", run_db, "--mix", mix, "--out", out)[0] == ExitCode.OK
    code, stdout, err = run_cli("export", "--db", run_db, "--mix", mix, "--out", "-")
    assert code == ExitCode.OK, err
    assert json.loads(stdout) == json.loads(out.read_text(encoding="utf-8"))
    assert "to stdout" in err and "  total" in err
