"""A run that meets the unexpected: crashes in its producer, a backend or a write, and event
listeners that raise or block. Every call still ends in the ledger; the run says how it ended."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from visinstruct.core import pipeline
from visinstruct.core.config import load_config
from visinstruct.core.events import Dispatcher, Event, GenerationParsed, RunFinished
from visinstruct.core.export.writers import ExportItem, export
from visinstruct.core.models.backends.scripted import ScriptedBackend
from visinstruct.core.store.database import Store
from visinstruct.core.store.provenance import kept_with_provenance
from visinstruct.dataset import sample

LIMIT = 3


def make_config(tmp_path: Path, rules: list[dict[str, Any]] | None = None) -> Path:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"rules": rules or []}))
    config = tmp_path / "run.toml"
    config.write_text(f"""db = "{tmp_path / 'run.db'}"
[source]
coco_captions = "{sample.captions_path()}"
limit = {LIMIT}
[generation]
model = "fake"
[judge]
model = "fake"
threshold = 1
[models.fake]
backend = "scripted"
script = "{script}"
max_in_flight = 2
""")
    return config


def run(config_path: Path, emit: Any = None) -> tuple[pipeline.RunSummary, list[Event]]:
    config = load_config(config_path)
    events: list[Event] = []
    store = Store(config.db)
    try:
        summary = pipeline.run(config, store, emit or events.append)
    finally:
        store.close()
    return summary, events


def rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def seed_images(db: Path, images: int) -> None:
    """A store of `images` images with a caption each, written directly (no source to index)."""
    Store(db).close()
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO images (id, file_name, width, height) VALUES (?, ?, 64, 48)",
                         [(i, f"{i:012d}.jpg") for i in range(1, images + 1)])
        conn.executemany("INSERT INTO captions (image_id, idx, text) VALUES (?, 0, ?)",
                         [(i, f"A red bus number {i} on a street.") for i in range(1, images + 1)])


def test_a_crash_in_the_producer_is_a_failed_run_and_still_ends_with_run_finished(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from visinstruct.core.config import (
        Config,
        GenerationConfig,
        JudgeConfig,
        ModelConfig,
        SourceConfig,
    )
    from visinstruct.core.events import ImageDone
    from visinstruct.core.pipeline import backlog

    db = tmp_path / "run.db"
    seed_images(db, 501)  # two pages of images: the second is read once the first is handed out
    fake = ModelConfig(name="fake", backend="scripted", max_in_flight=2)
    config = Config(db=db, source=SourceConfig(), generation=GenerationConfig(model="fake"),
                    judge=JudgeConfig(model="fake", threshold=1), models={"fake": fake})
    events: list[Event] = []
    first_done = threading.Event()
    real_load = backlog.load_images
    pages_read = 0

    def load_images(store: Any, ids: Any) -> Any:
        # The second page's read fails, and only once work on the first page is under way.
        nonlocal pages_read
        pages_read += 1
        if pages_read == 1:
            return real_load(store, ids)
        assert first_done.wait(timeout=60), "no unit of the first page finished"
        raise sqlite3.OperationalError("no such table: relations")

    def emit(event: Event) -> None:
        if isinstance(event, ImageDone):
            first_done.set()
        events.append(event)

    monkeypatch.setattr(backlog, "load_images", load_images)
    with Store(db) as store:
        summary = pipeline.run(config, store, emit)
    assert summary.status == "failed"
    assert summary.error == "OperationalError: no such table: relations"
    assert isinstance(events[-1], RunFinished)
    assert (events[-1].status, events[-1].error) == ("failed", summary.error)
    assert rows(db, "SELECT status, message FROM runs") == [("failed", summary.error)]
    # The units already handed out were finished, not abandoned mid-call.
    assert summary.done_units == 500 * 3 and summary.failed_units == 0
    assert rows(db, "SELECT COUNT(*) FROM llm_calls WHERE status = 'in_flight'") == [(0,)]


def test_an_unexpected_exception_in_a_backend_is_a_failed_call_with_its_class(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_complete = ScriptedBackend.complete

    def complete(self: ScriptedBackend, request: Any, endpoint: str | None = None) -> Any:
        if request.tag == "generate:detail":
            raise RecursionError("maximum recursion depth exceeded while decoding")
        return real_complete(self, request, endpoint)

    monkeypatch.setattr(ScriptedBackend, "complete", complete)
    summary, events = run(make_config(tmp_path))
    db = tmp_path / "run.db"
    assert summary.status == "finished" and summary.failed_units == LIMIT
    assert isinstance(events[-1], RunFinished) and events[-1].failed_calls == LIMIT
    assert rows(db, "SELECT DISTINCT status, error_kind, error_class, error FROM llm_calls "
                    "WHERE task = 'detail'") == [
        ("error", "permanent", "RecursionError",
         "RecursionError: maximum recursion depth exceeded while decoding")]
    assert rows(db, "SELECT COUNT(*) FROM llm_calls WHERE status = 'in_flight'") == [(0,)]
    # The next run sends only the failed units again.
    second, _ = run(make_config(tmp_path))
    assert {r[0] for r in rows(db, "SELECT DISTINCT task FROM llm_calls WHERE run_id = ?",
                               (second.run_id,))} == {"detail"}


def test_a_write_that_raises_finishes_its_call_as_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from visinstruct.core.pipeline import generate as generate_module

    real_insert = generate_module.insert_generation

    def insert_generation(conn: sqlite3.Connection, image_id: int, task: str,
                          *args: Any, **kwargs: Any) -> int:
        generation_id = real_insert(conn, image_id, task, *args, **kwargs)
        if task == "conversation":
            raise sqlite3.IntegrityError("a constraint the writer did not expect")
        return generation_id

    monkeypatch.setattr(generate_module, "insert_generation", insert_generation)
    summary, _ = run(make_config(tmp_path))
    db = tmp_path / "run.db"
    assert summary.failed_units == LIMIT
    assert rows(db, "SELECT DISTINCT status, error_class FROM llm_calls WHERE task = "
                    "'conversation' AND stage = 'generate'") == [("error", "IntegrityError")]
    assert rows(db, "SELECT COUNT(*) FROM generations WHERE task = 'conversation'") == [(0,)]
    assert rows(db, "SELECT COUNT(*) FROM llm_calls WHERE status NOT IN ('ok', 'error')") \
        == [(0,)]


def test_hostile_model_text_is_cleaned_capped_and_exports(tmp_path: Path) -> None:
    many = [{"question": f"Question {n} about <image> the \x1b[1mscene\x1b[0m?",
             "answer": f"Answer {n}\x00 with a lone \ud800 surrogate."} for n in range(40)]
    config = make_config(tmp_path, [
        {"match": "^generate:conversation", "reply": json.dumps({"pairs": many})},
        {"match": "^generate:detail", "reply": json.dumps({"pairs": [
            {"question": "Describe it.",
             "answer": "A brown dog runs across the park toward a red ball. It"}]})},
    ])
    summary, events = run(config)
    assert summary.status == "finished" and summary.failed_units == 0
    db = tmp_path / "run.db"
    counts = rows(db, "SELECT g.task, COUNT(p.id) FROM generations g JOIN pairs p ON "
                      "p.generation_id = g.id GROUP BY g.task")
    assert dict(counts)["conversation"] == LIMIT * 10
    parsed = [e for e in events if isinstance(e, GenerationParsed) and e.task == "conversation"]
    assert all("kept the first 10 of 40 pairs" in " ".join(e.problems) for e in parsed)
    texts = " ".join(q + a for q, a in rows(db, "SELECT question, answer FROM pairs"))
    assert "<image>" not in texts and "\x1b" not in texts and "\x00" not in texts
    assert "\ufffd" in texts
    details = rows(db, "SELECT answer FROM pairs p JOIN generations g ON g.id = p.generation_id "
                       "WHERE g.task = 'detail'")
    assert details and all(a == "A brown dog runs across the park toward a red ball."
                           for (a,) in details)
    store = Store(db)
    try:
        items = [ExportItem(k.image_id, k.task, k.pairs)
                 for k in kept_with_provenance(store, 1, scores=False)]
    finally:
        store.close()
    assert export(items, "llava", tmp_path / "out.json").records == LIMIT * 3


def test_a_listener_that_raises_is_reported_once_and_the_run_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[Event] = []

    def broken(event: Event) -> None:
        seen.append(event)
        raise ValueError("the display broke")

    summary, _ = run(make_config(tmp_path), emit=broken)
    assert summary.status == "finished" and summary.failed_units == 0
    assert isinstance(seen[-1], RunFinished)
    err = capsys.readouterr().err
    assert err.count("the display broke") == 1
    assert "an event listener failed" in err


def test_a_blocked_listener_never_delays_a_commit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    work_done = threading.Event()
    seen: list[Event] = []
    real_close = Dispatcher.close

    def close(self: Dispatcher) -> None:
        work_done.set()  # every unit is committed and RunFinished queued: the run waits here
        real_close(self)

    monkeypatch.setattr(Dispatcher, "close", close)

    def blocked(event: Event) -> None:
        release.wait(60)
        seen.append(event)

    result: list[pipeline.RunSummary] = []
    worker = threading.Thread(target=lambda: result.append(run(make_config(tmp_path),
                                                               emit=blocked)[0]))
    worker.start()
    try:
        assert work_done.wait(60)
        db = tmp_path / "run.db"
        # All the work was committed while the listener still held its first event.
        assert not seen
        assert rows(db, "SELECT status FROM runs") == [("finished",)]
        assert rows(db, "SELECT COUNT(*), SUM(status = 'ok') FROM llm_calls") == [
            (LIMIT * 3 * 2, LIMIT * 3 * 2)]
    finally:
        release.set()
        worker.join(60)
    assert result and result[0].status == "finished"
    assert isinstance(seen[-1], RunFinished) and len(seen) > LIMIT * 3


def test_a_failed_run_exits_1_naming_the_error_and_json_ends_with_run_finished(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: Any) -> None:
    from visinstruct.core.pipeline import backlog

    def load_images(*_args: Any) -> Any:
        raise KeyError("no such page")

    # The store read that gives the run its images fails once the run has started.
    monkeypatch.setattr(backlog, "load_images", load_images)
    code, out, err = run_cli("run", "--headless", "--json", "--config", make_config(tmp_path))
    assert code == 1
    assert "the run failed: KeyError: 'no such page'" in err
    last = json.loads(out.splitlines()[-1])
    assert (last["event"], last["status"], last["error"]) == (
        "RunFinished", "failed", "KeyError: 'no such page'")


def test_image_tokens_and_escapes_in_captions_never_block_an_export(tmp_path: Path) -> None:
    source = json.loads(Path(sample.captions_path()).read_text(encoding="utf-8"))
    for number, annotation in enumerate(source["annotations"]):
        if number % 2 == 0:
            annotation["caption"] = f"<image>\n{annotation['caption']} \x1b[31m<image>\x00"
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps(source), encoding="utf-8")
    config = make_config(tmp_path)
    config.write_text(config.read_text().replace(str(sample.captions_path()), str(captions)))
    summary, _ = run(config)
    assert summary.status == "finished" and summary.failed_units == 0
    db = tmp_path / "run.db"
    stored = " ".join(t for (t,) in rows(db, "SELECT text FROM captions"))
    assert "<image>" not in stored and "\x1b" not in stored
    store = Store(db)
    try:
        items = [ExportItem(k.image_id, k.task, k.pairs)
                 for k in kept_with_provenance(store, 1, scores=False)]
    finally:
        store.close()
    assert export(items, "llava", tmp_path / "out.json").records == LIMIT * 3
