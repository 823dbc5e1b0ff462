"""The real bundled GGUF model through llama-cpp-python: slow, but part of CI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from visinstruct.core.cli import main
from visinstruct.core.export.validate import validate_llava_file

pytest.importorskip("llama_cpp", reason="the `local` extra is not installed")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_two_sample_images_through_the_local_model(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "local.db"
    # The embedded defaults: bundled sample data, the bundled Gemma 3 270M for both stages.
    code = main(["run", "--headless", "--json", "--db", str(db), "--limit", "2",
                 "--set", "generation.max_tokens=160", "--set", "judge.max_tokens=80"])
    out = capsys.readouterr().out
    assert code in (0, 1), out[-2000:]  # 1: some unit failed, e.g. a context overflow
    finished = json.loads(out.strip().splitlines()[-1])
    assert finished["event"] == "RunFinished" and finished["status"] == "finished"
    assert finished["done_units"] == finished["total_units"] == 6
    with sqlite3.connect(db) as conn:
        calls = conn.execute("SELECT status, endpoint, tokens_out FROM llm_calls").fetchall()
        generations = conn.execute("SELECT status, raw FROM generations").fetchall()
    assert calls and all(status == "ok" for status, _, _ in calls)
    assert all(endpoint.startswith("local:") and tokens > 0 for _, endpoint, tokens in calls)
    assert len(generations) == 6
    # JSON-schema-constrained output: the tiny model's text is JSON, whatever its quality.
    for status, raw in generations:
        if status == "ok":
            json.loads(raw)
    out_file = tmp_path / "llava.json"
    assert main(["export", "--format", "llava", "--db", str(db), "--out", str(out_file),
                 "--threshold", "1"]) == 0
    assert validate_llava_file(out_file).ok
