"""Any bytes or JSON a model server sends back are data: every call ends in the ledger, every
unit ends done or failed with a reason, a resume pays for nothing finished, exports validate."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections import deque
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.model_replies import prompt_text, reply_for
from tests.fakes.openai_server import OpenAIServer
from tests.fakes.scripting import Behaviour, Malformed, RecordedRequest, Reply, Script
from visinstruct.core import pipeline
from visinstruct.core.config import load_config
from visinstruct.core.export.validate import validate_llava_file
from visinstruct.core.export.writers import ExportItem, export
from visinstruct.core.store.database import Store
from visinstruct.core.store.provenance import kept_with_provenance
from visinstruct.dataset import sample

IMAGES = 2
TASKS = ("conversation", "detail", "complex_reasoning")

# Text a hostile or broken model could send: any code point (lone surrogates included),
# undecodable bytes, and the tokens and escapes that used to reach the exports.
_NASTY = st.sampled_from(["<image>", "<IMAGE>\n", "\x00", "\x1b[31m", "\x1b]0;x\x07", "\ud800",
                          "\udfff", "\r\n", "\u2028", "\ufeff", "Question: ", "Answer: "])
_TEXT = st.lists(st.one_of(
    st.text(st.characters(blacklist_categories=()), max_size=40), _NASTY,
    st.just("A large brown dog runs across the grassy park toward a red ball."),
), max_size=8).map("".join)
_BYTES_AS_TEXT = st.binary(max_size=120).map(lambda b: b.decode("utf-8", "surrogateescape"))
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["pairs", "question", "answer", "description", "scores", "score",
                         "from", "value", "q", "a", "text"]) | st.text(max_size=8),
        inner, max_size=4),
    max_leaves=12)
_PAIRS = st.builds(
    lambda pairs: json.dumps({"pairs": pairs}),
    st.lists(st.fixed_dictionaries({"question": _TEXT, "answer": _TEXT}), max_size=40))
_DEEP = st.integers(50, 100_000).map(lambda n: "[" * n + "]" * n)
_REPLY_TEXT = st.one_of(_TEXT, _BYTES_AS_TEXT, _JSON.map(json.dumps), _PAIRS, _DEEP)
# None: a well-behaved reply; bodies that are not even JSON go out as Malformed.
_BEHAVIOUR = st.one_of(
    st.none(),
    _REPLY_TEXT.map(lambda text: Reply(text=text)),
    st.binary(max_size=80).map(lambda body: Malformed(body=body)),
    st.integers(1000, 200_000).map(lambda n: Malformed(body=b"[" * n + b"]" * n)),
)


def good_reply(request: RecordedRequest) -> Reply:
    """A well-formed reply; a judge gives every pair 10, so whatever was stored is exported."""
    text = prompt_text(request.json)
    numbers = re.findall(r"^Pair (\d+)$", text.rsplit("Context:", 1)[-1], re.MULTILINE)
    if numbers:
        return Reply(text=json.dumps({"scores": [
            {"index": n, "score": 10, "reason": "ok"} for n in range(1, int(max(numbers)) + 1)]}))
    return Reply(text=reply_for(text))


class Replies:
    """The fake's behaviour source: the drawn behaviours in order, then good replies."""

    def __init__(self) -> None:
        self.queue: deque[Behaviour | None] = deque()
        self.lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Behaviour:
        with self.lock:
            drawn = self.queue.popleft() if self.queue else None
        return drawn if drawn is not None else good_reply(request)


def write_config(folder: Path, url: str) -> Path:
    config = folder / "run.toml"
    config.write_text(f"""db = "{folder / 'run.db'}"
[source]
coco_captions = "{sample.captions_path()}"
limit = {IMAGES}
[generation]
model = "served"
max_tokens = 64
[judge]
model = "served"
[models.served]
backend = "openai"
base_url = "{url}/v1"
model = "fake-model"
max_in_flight = 1     # one worker: the drawn replies meet the requests in a fixed order
attempts = 1
probe_seconds = 0.05
read_timeout = 10
""")
    return config


def unit_states(db: Path, run_id: int) -> dict[tuple[int, str], str]:
    """What became of each unit: 'done', 'failed: <reason>' or 'unfinished'."""
    states: dict[tuple[int, str], str] = {}
    with sqlite3.connect(db) as conn:
        image_ids = [r[0] for r in conn.execute("SELECT id FROM images ORDER BY id LIMIT ?",
                                                (IMAGES,))]
        for image_id in image_ids:
            for task in TASKS:
                generation = conn.execute(
                    "SELECT id, status, problems FROM generations WHERE image_id = ? AND "
                    "task = ? AND purpose = 'run'", (image_id, task)).fetchone()
                errors = [r[0] for r in conn.execute(
                    "SELECT error FROM llm_calls WHERE image_id = ? AND task = ? AND run_id = ? "
                    "AND status = 'error'", (image_id, task, run_id))]
                if generation is not None and generation[1] == "parse_failure":
                    problems = json.loads(generation[2])
                    states[(image_id, task)] = (f"failed: {problems[0]}" if problems
                                                else "unfinished")
                elif generation is not None and conn.execute(
                        "SELECT 1 FROM judgements WHERE generation_id = ?",
                        (generation[0],)).fetchone():
                    states[(image_id, task)] = "done"
                elif generation is not None and not conn.execute(
                        "SELECT 1 FROM pairs p WHERE p.generation_id = ? AND NOT EXISTS ("
                        "SELECT 1 FROM pair_gates x WHERE x.pair_id = p.id AND x.action = 'drop')",
                        (generation[0],)).fetchone():
                    states[(image_id, task)] = "done"  # every pair gated: nothing to judge
                elif errors and all(errors):
                    states[(image_id, task)] = f"failed: {errors[-1]}"
                else:
                    states[(image_id, task)] = "unfinished"
    return states


def run_once(config_path: Path) -> pipeline.RunSummary:
    config = load_config(config_path)
    store = Store(config.db)
    try:
        return pipeline.run(config, store, lambda event: None)
    finally:
        store.close()


@pytest.mark.timeout(240)
def test_any_reply_ends_in_the_ledger_and_exports_validate(tmp_path_factory: Any) -> None:
    replies = Replies()
    runs: list[int] = []
    script = Script()
    script.on("*", replies)
    with OpenAIServer(script) as server:

        @settings(max_examples=25, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(st.lists(_BEHAVIOUR, min_size=1, max_size=12))
        def check(drawn: list[Behaviour | None]) -> None:
            folder = tmp_path_factory.mktemp("hostile")
            config = write_config(folder, server.url)
            with replies.lock:
                replies.queue = deque(drawn)
            first = run_once(config)
            runs.append(first.run_id)
            db = folder / "run.db"
            assert first.status == "finished", first.error
            assert first.done_units == first.total_units == IMAGES * len(TASKS)
            with sqlite3.connect(db) as conn:
                assert conn.execute("SELECT COUNT(*) FROM llm_calls WHERE status NOT IN "
                                    "('ok', 'error')").fetchone()[0] == 0
                assert conn.execute("SELECT COUNT(*) FROM llm_calls WHERE status = 'error' "
                                    "AND COALESCE(error, '') = ''").fetchone()[0] == 0
            states = unit_states(db, first.run_id)
            assert "unfinished" not in states.values(), states
            done = {unit for unit, state in states.items() if state == "done"}

            second = run_once(config)
            with sqlite3.connect(db) as conn:
                resent = {(r[0], r[1]) for r in conn.execute(
                    "SELECT image_id, task FROM llm_calls WHERE run_id = ?", (second.run_id,))}
            assert not resent & done, "a finished unit was paid for again"

            store = Store(db)
            try:
                items = [ExportItem(kept.image_id, kept.task, kept.pairs)
                         for kept in kept_with_provenance(store, 7, scores=False)]
            finally:
                store.close()
            out = folder / "llava.json"
            summary = export(items, "llava", out)
            report = validate_llava_file(out)
            assert report.problem_count == 0, report.problems[:3]
            assert summary.records == report.records
            for record in json.loads(out.read_text(encoding="utf-8")):
                assert len(record["conversations"]) <= 2 * 10
                for turn in record["conversations"]:
                    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", turn["value"])

        check()
    assert len(runs) >= 25, "hypothesis ran fewer examples than asked: the test proves little"
