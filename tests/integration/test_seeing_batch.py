"""Bedrock batch records carry the picture in the same InvokeModel bodies as online calls."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.fakes.bedrock_batch_server import model_reply
from tests.fakes.model_replies import prompt_text
from tests.fakes.scripting import RecordedRequest
from tests.fakes.seeing import COLOURS, colour_of, pictures_in, seeing_generator, seeing_judge
from tests.integration.support_batch import (
    BUCKET,
    Aws,
    RunCli,
    db_of,
    rows,
    status,
    write_config,
)
from tests.integration.test_seeing_run import MISSING, PICTURES, write_pictures
from visinstruct.core.models import batch_calls


def seeing_reply(model_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """A Claude reply from a model that looks at the record's picture."""
    request = RecordedRequest("batch", "invoke", "POST", "/", {}, b"", body)
    judging = re.search(r"^Pair \d+$", prompt_text(body), re.M) is not None
    text = seeing_judge(request) if judging else seeing_generator(request)
    reply = model_reply(model_id, {"messages": []})
    reply["content"] = [{"type": "text", "text": text}]
    return reply


def test_batch_records_carry_the_picture_and_a_missing_one_fails_its_image(
        aws: Aws, run_cli: RunCli, tmp_path: Path) -> None:
    images = tmp_path / "images"
    write_pictures(images)
    seen: list[tuple[str, tuple[int, int]]] = []

    def respond(model_id: str, body: dict[str, Any]) -> dict[str, Any]:
        for picture in pictures_in(body):
            seen.append((colour_of(picture), picture.size))
        return seeing_reply(model_id, body)

    aws.plane.respond = respond
    config = write_config(tmp_path, "seeing", limit=3, extra="min_records = 1\n"
                          "image_max_side = 256\n")
    text = config.read_text().replace("limit = 3\n", f'limit = 3\nimages_dir = "{images}"\n')
    config.write_text(text.replace('model = "claude"\n[judge]',
                                   'model = "claude"\ntasks = ["conversation"]\n[judge]'))

    code, _, err = run_cli("run", "--headless", "--config", config)

    assert code in (0, 1), err
    assert f"image {MISSING[0]} skipped" in err and "not found" in err
    # Two records per stage, each with its image's picture at most 256 pixels on a side.
    colours = sorted(colour for _, colour in PICTURES.values())
    assert sorted(c for c, _ in seen) == sorted(colours * 2)
    assert all(size == (256, 171) for _, size in seen)
    assert {c for c in COLOURS if c not in colours} == {"green"}
    report = status(run_cli, db_of(config))
    assert [(j["stage"], j["records"]) for j in report["batch_jobs"]] == [
        ("generate", 2), ("judge", 2)]
    assert report["pictures_unusable"]["count"] == 1
    assert report["pictures_sent"] == 4
    kept = rows(db_of(config), "SELECT answer FROM kept_pairs ORDER BY image_id")
    assert [answer for (answer,) in kept] == [
        f"The middle of the photo is {PICTURES[i][1]}." for i in sorted(PICTURES)]
    assert rows(db_of(config), "SELECT COUNT(*) FROM llm_calls WHERE image_id = ?",
                (MISSING[0],)) == [(0,)]


def test_a_jobs_records_file_stays_under_the_input_limit(
        aws: Aws, run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = tmp_path / "images"
    write_pictures(images)
    aws.plane.respond = seeing_reply
    config = write_config(tmp_path, "split", limit=2, extra="min_records = 1\n"
                          "image_max_side = 256\n")
    text = config.read_text().replace("limit = 2\n", f'limit = 2\nimages_dir = "{images}"\n')
    config.write_text(text.replace('model = "claude"\n[judge]',
                                   'model = "claude"\ntasks = ["conversation"]\n[judge]'))
    # A limit below two records' size: each job takes one record (one alone always goes).
    monkeypatch.setattr(batch_calls, "MAX_INPUT_FILE_BYTES", 1)

    code, _, err = run_cli("run", "--headless", "--config", config)

    assert code == 0, err
    jobs = status(run_cli, db_of(config))["batch_jobs"]
    assert sorted((j["stage"], j["records"]) for j in jobs) == [
        ("generate", 1), ("generate", 1), ("judge", 1), ("judge", 1)]
    listed = boto3.client("s3", region_name="us-east-1").list_objects_v2(
        Bucket=BUCKET, Prefix="jobs/")["Contents"]
    files = [o for o in listed if o["Key"].endswith("records.jsonl")]
    assert len(files) == 4
    assert all(body.count(b"\n") <= 1 for body in (
        boto3.client("s3", region_name="us-east-1").get_object(
            Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in files))
