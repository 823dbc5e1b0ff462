"""The pipeline on the scripted backend: messy model output, counts, events, stopping, resuming."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from visinstruct.core import pipeline
from visinstruct.core.config import load_config
from visinstruct.core.events import Event, ImageDone, PairsJudged, RunFinished, RunStarted
from visinstruct.core.store.database import Store
from visinstruct.dataset import sample

REPO = Path(__file__).resolve().parents[2]


def make_config(tmp_path: Path, rules: list[dict[str, Any]] | None = None, *, limit: int = 4,
                latency: float = 0.0, extra: str = "") -> Path:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"latency": latency, "rules": rules or []}))
    config = tmp_path / "run.toml"
    config.write_text(f"""db = "{tmp_path / 'run.db'}"
[source]
coco_captions = "{sample.captions_path()}"
coco_instances = "{sample.instances_path()}"
limit = {limit}
[generation]
model = "fake"
[judge]
model = "fake"
threshold = 7
[models.fake]
backend = "scripted"
script = "{script}"
max_in_flight = 4
{extra}""")
    return config


def run(config: Path) -> tuple[pipeline.RunSummary, list[Event], Path]:
    loaded = load_config(config)
    events: list[Event] = []
    lock = threading.Lock()

    def emit(event: Event) -> None:
        with lock:
            events.append(event)

    store = Store(loaded.db)
    try:
        summary = pipeline.run(loaded, store, emit)
    finally:
        store.close()
    return summary, events, loaded.db


def counts(db: Path, sql: str) -> Any:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchone()[0]


@pytest.mark.parametrize("reply", [
    "",                                                       # empty text
    "%%%% ### ¿¿ 12 ]]{",                                      # garbage
    "I'm sorry, but I can't help with that request.",         # a refusal
    "[INST] You write questions about a picture. [/INST]",    # an echo with nothing after it
])
def test_unusable_generation_output_is_a_counted_parse_failure(tmp_path: Path, reply: str) -> None:
    config = make_config(tmp_path, [{"match": "^generate:conversation", "reply": reply}], limit=3)
    summary, events, db = run(config)
    assert summary.status == "finished" and summary.failed_units == 0
    assert summary.counts["parse_failures"] == 3
    raw = {row for row in sqlite3.connect(db).execute(
        "SELECT raw FROM generations WHERE status = 'parse_failure'")}
    assert raw == {(reply,)}  # the raw text is kept for review
    assert summary.done_units == summary.total_units == 9


def test_a_judge_with_nonsense_or_too_few_scores_leaves_pairs_unjudged(tmp_path: Path) -> None:
    two_pairs = json.dumps({"pairs": [{"question": "What colour is the bus?", "answer": "Red."},
                                      {"question": "Is it raining?", "answer": "Yes, lightly."}]})
    config = make_config(tmp_path, [
        {"match": "^generate:(conversation|complex)", "reply": two_pairs},
        {"match": "^judge:", "replies": ["1: 9", "the pairs look fine to me"]},
    ], limit=4)
    summary, events, db = run(config)
    assert summary.status == "finished"
    scores = sqlite3.connect(db).execute("SELECT score FROM judgements").fetchall()
    assert len(scores) == summary.counts["pairs"] == 4 * 2 * 2 + 4  # detail: one pair
    judged = [s for (s,) in scores if s is not None]
    assert judged and set(judged) == {9.0}
    assert summary.counts["unjudged_pairs"] == len(scores) - len(judged) > 0
    assert summary.counts["kept_pairs"] == len(judged)


def test_an_image_without_captions_is_counted_not_sent(tmp_path: Path) -> None:
    config = make_config(tmp_path, limit=2)
    loaded = load_config(config)
    store = Store(loaded.db)
    pipeline.ensure_indexed(loaded, store)
    first = store.scalar("SELECT MIN(id) FROM images")
    store.write_sync(lambda c: c.execute("DELETE FROM captions WHERE image_id = ?", (first,)))
    store.close()
    summary, _, db = run(config)
    assert summary.status == "finished"
    assert counts(db, f"SELECT COUNT(*) FROM llm_calls WHERE image_id = {first}") == 0
    assert counts(db, f"SELECT COUNT(*) FROM generations WHERE image_id = {first} "
                      "AND status = 'parse_failure'") == 3


def test_failed_calls_are_rows_and_the_run_goes_on(tmp_path: Path) -> None:
    config = make_config(tmp_path, [{"match": "^generate:detail", "error": "permanent"}], limit=3)
    summary, events, db = run(config)
    assert summary.status == "finished"
    assert summary.failed_units == 3
    assert summary.counts["failed_calls"] == 3
    assert summary.counts["conversations"] == 6
    # A second run retries only what failed, and finds the same permanent error.
    summary2, _, _ = run(config)
    assert summary2.total_units == 9 and summary2.failed_units == 3
    assert counts(db, "SELECT COUNT(*) FROM llm_calls WHERE status = 'ok'") == 12


def test_events_arrive_after_their_rows_are_committed(tmp_path: Path) -> None:
    config = make_config(tmp_path, limit=3)
    loaded = load_config(config)
    store = Store(loaded.db)
    seen: list[str] = []

    def emit(event: Event) -> None:
        # A fresh connection sees only committed data.
        if isinstance(event, PairsJudged):
            with sqlite3.connect(loaded.db) as conn:
                n = conn.execute("SELECT COUNT(*) FROM judgements WHERE generation_id = ?",
                                 (event.generation_id,)).fetchone()[0]
            seen.append("ok" if n == len(event.scores) else f"missing {event.generation_id}")

    pipeline.run(loaded, store, emit)
    store.close()
    assert seen and set(seen) == {"ok"}


def test_run_events_and_a_resume_that_has_nothing_to_do(tmp_path: Path) -> None:
    config = make_config(tmp_path, limit=3)
    summary, events, db = run(config)
    kinds = [type(e) for e in events]
    assert kinds[0] is RunStarted and kinds[-1] is RunFinished
    assert sum(1 for e in events if isinstance(e, ImageDone)) == 9
    calls = counts(db, "SELECT COUNT(*) FROM llm_calls")
    summary2, events2, _ = run(config)
    started = next(e for e in events2 if isinstance(e, RunStarted))
    assert started.done_units == started.total_units == 9
    assert counts(db, "SELECT COUNT(*) FROM llm_calls") == calls


def test_sigint_stops_cleanly_with_exit_code_3_and_resume_finishes(tmp_path: Path) -> None:
    config = make_config(tmp_path, limit=12, latency=0.05)
    db = tmp_path / "run.db"
    proc = subprocess.Popen([sys.executable, "-m", "visinstruct.core.cli", "run", "--headless",
                             "--json", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.monotonic() + 60
    while True:
        try:
            if counts(db, "SELECT COUNT(*) FROM llm_calls WHERE status = 'ok'") >= 10:
                break
        except sqlite3.Error:
            pass
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    last = json.loads(out.strip().splitlines()[-1])
    assert last["event"] == "RunFinished" and last["status"] == "interrupted"
    assert counts(db, "SELECT COUNT(*) FROM llm_calls WHERE status = 'in_flight'") == 0
    assert counts(db, "SELECT status FROM runs ORDER BY id DESC LIMIT 1") == "interrupted"
    done_before = counts(db, "SELECT COUNT(*) FROM generations")
    assert 0 < done_before < 36
    resumed = subprocess.run([sys.executable, "-m", "visinstruct.core.cli", "run", "--headless",
                              "--json", "--config", str(config)],
                             capture_output=True, text=True, cwd=REPO, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert counts(db, "SELECT COUNT(*) FROM generations") == 36


def test_a_gguf_path_that_is_not_gguf_is_refused_before_work(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 not a model")
    config = make_config(tmp_path, extra=f"""[models.mine]
backend = "local"
gguf = "{fake}"
""")
    text = config.read_text().replace('[generation]\nmodel = "fake"',
                                      '[generation]\nmodel = "mine"')
    config.write_text(text)
    result = subprocess.run([sys.executable, "-m", "visinstruct.core.cli", "run", "--headless",
                             "--config", str(config)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2
    assert "not a GGUF model file" in result.stderr and str(fake) in result.stderr
    assert not (tmp_path / "run.db").exists()


def test_core_never_imports_textual() -> None:
    code = ("import sys, visinstruct.core.pipeline, visinstruct.core.cli; "
            "print('textual' in sys.modules, 'rich.live' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, env={**os.environ})
    assert result.stdout.split() == ["False", "False"], result.stderr


def test_budget_stops_the_run_cleanly_and_status_shows_cost(tmp_path: Path) -> None:
    config = make_config(tmp_path, limit=24, latency=0.03, extra="""price_in_per_million = 1000
price_out_per_million = 0
[budget]
max_usd = 1.0
""")
    result = subprocess.run([sys.executable, "-m", "visinstruct.core.cli", "run", "--headless",
                             "--json", "--config", str(config)],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 4, result.stderr[-2000:]
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["status"] == "budget" and last["done_units"] < last["total_units"]
    assert "budget" in result.stderr
    db = tmp_path / "run.db"
    assert counts(db, "SELECT COUNT(*) FROM llm_calls WHERE status = 'in_flight'") == 0
    status = subprocess.run([sys.executable, "-m", "visinstruct.core.cli", "status", "--json",
                             "--db", str(db)], capture_output=True, text=True, cwd=REPO)
    report = json.loads(status.stdout)
    calls = report["calls"]
    # Each scripted call reports 100 input tokens: $0.10 at $1,000 per million.
    assert report["cost_usd"] == pytest.approx(calls * 0.1)
    assert report["cost_usd"] >= 1.0
    assert report["projected_cost_usd"] > report["cost_usd"]
    if report["kept_pairs"]:
        assert report["cost_per_kept_pair_usd"] == pytest.approx(
            report["cost_usd"] / report["kept_pairs"], rel=1e-3)


def test_a_finished_run_leaves_its_pairs_in_the_search_index(tmp_path: Path) -> None:
    summary, _, db = run(make_config(tmp_path))
    assert summary.status == "finished"
    with Store(db) as store:
        top = store.scalar("SELECT MAX(id) FROM pairs")
        assert top and store.get_meta("pairs_fts_upto") == str(top)
        assert store.scalar("SELECT COUNT(*) FROM pairs_fts") == store.scalar(
            "SELECT COUNT(*) FROM pairs")
