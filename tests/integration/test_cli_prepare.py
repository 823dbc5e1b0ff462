"""`visinstruct prepare` and `status`: indexing real COCO files, the baseline filter, and bad
input."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from visinstruct.core.errors import ExitCode
from visinstruct.dataset import sample

CliResult = tuple[int, str, str]
RunCli = Callable[..., CliResult]

STATUS_KEYS = (
    "images", "captions", "boxes", "baseline_conversations", "conversations", "pairs",
    "kept_pairs", "calls", "failed_calls", "parse_failures", "evaluations", "cost_usd",
    "cost_per_kept_pair_usd", "projected_cost_usd",
)
SAMPLE300_IMAGES = 300
SAMPLE300_CAPTIONS = 1514
IMAGES_WITH_BOXES = 79
VAL_MINI_BOXES = 624


def captions300(shared: Path) -> Path:
    return shared / "coco" / "captions_val2017_sample300.json"


def instances_mini(shared: Path) -> Path:
    return shared / "coco" / "instances_val2017_mini.json"


def status_json(run_cli: RunCli, db: Path) -> dict[str, Any]:
    code, out, err = run_cli("status", "--db", db, "--json")
    assert code == ExitCode.OK, err
    report: dict[str, Any] = json.loads(out)
    return report


def assert_one_line_naming(err: str, *names: object) -> None:
    """The refusal is one line on stderr that names what is wrong."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for name in names:
        assert str(name) in lines[0], lines[0]


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def mix665k_record(image_id: int, turns: list[tuple[str, str]], *,
                  folder: str = "coco/train2017") -> dict[str, Any]:
    """A record in the exact mix665k shape."""
    conversations = []
    for position, (question, answer) in enumerate(turns):
        conversations.append({"from": "human",
                              "value": f"<image>\n{question}" if position == 0 else question})
        conversations.append({"from": "gpt", "value": answer})
    return {"id": f"{image_id:012d}", "image": f"{folder}/{image_id:012d}.jpg",
            "conversations": conversations}


# -- the happy path ----------------------------------------------------------------------------

def test_prepare_indexes_the_real_val_sample(run_cli: RunCli, real_data: Path,
                                             tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    code, out, err = run_cli("prepare", "--db", db, "--coco-captions", captions300(real_data),
                             "--coco-instances", instances_mini(real_data))
    assert code == ExitCode.OK, err
    assert "300 images" in out and "1,514 captions" in out and "79 images" in out
    report = status_json(run_cli, db)
    for key in STATUS_KEYS:
        assert key in report, key
    assert report["images"] == SAMPLE300_IMAGES
    assert report["captions"] == SAMPLE300_CAPTIONS
    assert report["boxes"] == VAL_MINI_BOXES
    assert report["images_with_boxes"] == IMAGES_WITH_BOXES
    for key in ("baseline_conversations", "conversations", "pairs", "kept_pairs", "calls",
                "failed_calls", "parse_failures", "evaluations"):
        assert report[key] == 0, key
    assert report["cost_usd"] == 0


def test_boxes_land_on_exactly_the_images_that_have_them(
    run_cli: RunCli, real_data: Path, tmp_path: Path
) -> None:
    db = tmp_path / "store.db"
    code, _, err = run_cli("prepare", "--db", db, "--coco-captions", captions300(real_data),
                           "--coco-instances", instances_mini(real_data))
    assert code == ExitCode.OK, err
    instances = json.loads(instances_mini(real_data).read_text())
    expected = {a["image_id"] for a in instances["annotations"]}
    with sqlite3.connect(db) as conn:
        boxed = {r[0] for r in conn.execute("SELECT DISTINCT image_id FROM boxes")}
        bounds = conn.execute("SELECT MIN(MIN(x1, y1)), MAX(MAX(x2, y2)) FROM boxes").fetchone()
        seven = conn.execute("SELECT COUNT(*) FROM captions GROUP BY image_id "
                             "HAVING COUNT(*) = 7").fetchall()
    conn.close()
    assert boxed == expected and len(boxed) == IMAGES_WITH_BOXES
    assert 0.0 <= bounds[0] and bounds[1] <= 1.0  # stored normalised, not in pixels
    assert len(seven) == 1  # the one val2017 image with seven captions keeps all seven


def test_prepare_json_summary_and_a_second_prepare_adds_nothing(
    run_cli: RunCli, real_data: Path, tmp_path: Path
) -> None:
    db = tmp_path / "store.db"
    args = ("prepare", "--db", db, "--coco-captions", captions300(real_data),
            "--coco-instances", instances_mini(real_data), "--json")
    code, out, err = run_cli(*args)
    assert code == ExitCode.OK, err
    first = json.loads(out)
    assert first["added"]["images"] == SAMPLE300_IMAGES
    assert first["store"]["images_with_boxes"] == IMAGES_WITH_BOXES
    code, out, err = run_cli(*args)
    assert code == ExitCode.OK, err
    second = json.loads(out)
    assert second["added"]["images"] == 0
    assert second["store"] == first["store"]


def test_prepare_and_status_through_the_module_entry_point(
    run_cli_subprocess: RunCli, real_data: Path, tmp_path: Path
) -> None:
    code, out, err = run_cli_subprocess("prepare", "--db", "s.db", "--coco-captions",
                                        captions300(real_data), "--coco-instances",
                                        instances_mini(real_data))
    assert code == ExitCode.OK, err
    assert (tmp_path / "s.db").is_file()
    code, out, err = run_cli_subprocess("status", "--db", "s.db", "--json")
    assert code == ExitCode.OK, err
    report = json.loads(out)  # stdout carries only the data
    assert (report["images"], report["captions"], report["images_with_boxes"]) == (
        SAMPLE300_IMAGES, SAMPLE300_CAPTIONS, IMAGES_WITH_BOXES)


def test_status_plain_text_lists_the_counts(run_cli: RunCli, real_data: Path,
                                            tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    assert run_cli("prepare", "--db", db, "--coco-captions", captions300(real_data))[0] == 0
    code, out, _ = run_cli("status", "--db", db)
    assert code == ExitCode.OK
    rows = dict(line.split(None, 1) for line in out.splitlines())
    assert rows["images"].strip() == "300" and rows["boxes"].strip() == "0"


def gpt4_pairs(shared: Path, kind: str) -> list[tuple[str, str]]:
    """Real GPT-4 LLaVA-Bench question-answer pairs of one kind (conv, detail, complex)."""
    path = shared / "llava" / "llava_bench_coco" / "coco2014_val_gpt4_qa_30x3.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(row["instruction"], row["output"]) for row in rows if row["type"] == kind]


def test_baseline_restricts_the_images_and_is_stored(
    run_cli: RunCli, real_data: Path, tmp_path: Path
) -> None:
    captions = json.loads(captions300(real_data).read_text())
    ids = [image["id"] for image in captions["images"]][:4]
    conv, detail = gpt4_pairs(real_data, "conv"), gpt4_pairs(real_data, "detail")
    records = [mix665k_record(image_id, conv[2 * n: 2 * n + 2]) for n, image_id in enumerate(ids)]
    records.append(mix665k_record(ids[0], detail[:1]))
    records.append(mix665k_record(123456789, conv[10:12]))  # an image the captions file lacks
    # mix665k also holds text-only records and other datasets' images; neither is a COCO image.
    records.append({"id": "text-only-1", "conversations": [
        {"from": "human", "value": conv[20][0]}, {"from": "gpt", "value": conv[20][1]}]})
    records.append(mix665k_record(ids[1], conv[21:23], folder="gqa/images"))
    baseline = write_json(tmp_path / "llava_v1_5_mix665k.json", records)
    db = tmp_path / "store.db"
    code, _, err = run_cli("prepare", "--db", db, "--coco-captions", captions300(real_data),
                           "--coco-instances", instances_mini(real_data), "--baseline", baseline)
    assert code == ExitCode.OK, err
    report = status_json(run_cli, db)
    assert report["images"] == len(ids)
    assert report["captions"] == sum(1 for a in captions["annotations"] if a["image_id"] in ids)
    assert report["images_with_boxes"] == sum(1 for i in ids if i in {
        a["image_id"] for a in json.loads(instances_mini(real_data).read_text())["annotations"]})
    assert report["baseline_conversations"] == len(ids) + 2
    with sqlite3.connect(db) as conn:
        stored_ids = sorted(r[0] for r in conn.execute("SELECT id FROM images"))
        third = [json.loads(r[0]) for r in conn.execute(
            "SELECT pairs FROM baseline_conversations WHERE image_id = ? ORDER BY id", (ids[2],))]
        first_tasks = sorted(r[0] for r in conn.execute(
            "SELECT task FROM baseline_conversations WHERE image_id = ?", (ids[0],)))
    conn.close()
    assert stored_ids == sorted(ids)
    # The <image> token is markup, not part of the question.
    assert third == [[list(pair) for pair in conv[4:6]]]
    assert first_tasks == ["conversation", "detail"]


# -- bad input -----------------------------------------------------------------------------------

def _malformed(tmp: Path, shared: Path) -> tuple[list[object], Path]:
    text = captions300(shared).read_text()
    bad = tmp / "captions_broken.json"
    bad.write_text(text[: len(text) // 2])
    return ["--coco-captions", bad], bad


def _captions_as_instances(tmp: Path, shared: Path) -> tuple[list[object], Path]:
    wrong = shared / "coco" / "captions_val2017_mini.json"
    return ["--coco-captions", captions300(shared), "--coco-instances", wrong], wrong


def _instances_as_captions(tmp: Path, shared: Path) -> tuple[list[object], Path]:
    wrong = instances_mini(shared)
    return ["--coco-captions", wrong], wrong


def _boxes_for_unknown_image(tmp: Path, shared: Path) -> tuple[list[object], Path]:
    captions = json.loads(captions300(shared).read_text())
    boxed = {a["image_id"] for a in json.loads(instances_mini(shared).read_text())["annotations"]}
    dropped = min(boxed)
    captions["images"] = [i for i in captions["images"] if i["id"] != dropped]
    captions["annotations"] = [a for a in captions["annotations"] if a["image_id"] != dropped]
    cut = write_json(tmp / "captions_cut.json", captions)
    return (["--coco-captions", cut, "--coco-instances", instances_mini(shared)],
            instances_mini(shared))


def _unknown_category(tmp: Path, shared: Path) -> tuple[list[object], Path]:
    instances = json.loads(instances_mini(shared).read_text())
    instances["annotations"][5]["category_id"] = 999
    bad = write_json(tmp / "instances_badcat.json", instances)
    return ["--coco-captions", captions300(shared), "--coco-instances", bad], bad


def _zero_size_image(tmp: Path, shared: Path) -> tuple[list[object], Path]:
    captions = json.loads(captions300(shared).read_text())
    boxed = {a["image_id"] for a in json.loads(instances_mini(shared).read_text())["annotations"]}
    for image in captions["images"]:
        if image["id"] in boxed:
            image["width"] = 0
            break
    bad = write_json(tmp / "captions_zero.json", captions)
    return (["--coco-captions", bad, "--coco-instances", instances_mini(shared)],
            instances_mini(shared))


def _missing_file(tmp: Path, shared: Path) -> tuple[list[object], Path]:
    missing = tmp / "captions_train2017.json"
    return ["--coco-captions", missing], missing


def _missing_instances(tmp: Path, shared: Path) -> tuple[list[object], Path]:
    missing = tmp / "instances_train2017.json"
    return ["--coco-captions", captions300(shared), "--coco-instances", missing], missing


def _malformed_baseline(tmp: Path, shared: Path) -> tuple[list[object], Path]:
    bad = tmp / "llava_v1_5_mix665k.json"
    bad.write_text('[{"id": "000000397133", "image": "coco/train2017/000000397133.jpg", "conv')
    return ["--coco-captions", captions300(shared), "--baseline", bad], bad


BAD_INPUTS: dict[str, Callable[[Path, Path], tuple[list[object], Path]]] = {
    "malformed-json": _malformed,
    "captions-as-instances": _captions_as_instances,
    "instances-as-captions": _instances_as_captions,
    "boxes-for-unknown-image": _boxes_for_unknown_image,
    "unknown-category": _unknown_category,
    "zero-size-image": _zero_size_image,
    "missing-file": _missing_file,
    "missing-instances": _missing_instances,
    "malformed-baseline": _malformed_baseline,
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_into_an_empty_store(
    case: str, run_cli: RunCli, real_data: Path, tmp_path: Path
) -> None:
    args, named = BAD_INPUTS[case](tmp_path, real_data)
    db = tmp_path / "store.db"
    code, out, err = run_cli("prepare", "--db", db, *args)
    assert code == ExitCode.BAD_INPUT
    assert out == ""
    assert_one_line_naming(err, named)
    if db.exists():
        report = status_json(run_cli, db)
        assert (report["images"], report["captions"], report["boxes"],
                report["baseline_conversations"]) == (0, 0, 0, 0)


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_leaves_earlier_content_unchanged(
    case: str, run_cli: RunCli, real_data: Path, tmp_path: Path
) -> None:
    db = tmp_path / "store.db"
    code, _, err = run_cli("prepare", "--db", db, "--coco-captions", sample.captions_path(),
                           "--coco-instances", sample.instances_path())
    assert code == ExitCode.OK, err
    before = status_json(run_cli, db)
    assert before["images"] == 24
    args, named = BAD_INPUTS[case](tmp_path, real_data)
    code, _, err = run_cli("prepare", "--db", db, *args)
    assert code == ExitCode.BAD_INPUT
    assert_one_line_naming(err, named)
    assert status_json(run_cli, db) == before


def test_bad_input_through_the_module_entry_point(
    run_cli_subprocess: RunCli, real_data: Path, tmp_path: Path
) -> None:
    args, named = _instances_as_captions(tmp_path, real_data)
    code, out, err = run_cli_subprocess("prepare", "--db", "s.db", *args)
    assert code == ExitCode.BAD_INPUT
    assert out == ""
    assert_one_line_naming(err, named)
    assert "Traceback" not in err


# -- bad stores and flags --------------------------------------------------------------------------
