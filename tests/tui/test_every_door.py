"""Every door into a store (status, export, the views, review, the lab, the monitor, analyze)
counts the same kept, judged, unjudged, dropped and flagged pairs, on a store with every case."""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.tui.support_monitor import SIZE, make_app, wait_for, write_config
from visinstruct.core.analysis.figures import ALL, analyze
from visinstruct.core.config import load_config
from visinstruct.core.errors import ExitCode
from visinstruct.core.lab.stats import version_stats
from visinstruct.core.review.samples import SampleFilter, pair_views, sample_page
from visinstruct.core.store.database import Store
from visinstruct.core.store.snapshots import StoreReader
from visinstruct.tui.screens.review import ReviewScreen

THRESHOLD = 7.0
# (generation key, question, score or None, gate action or None, human decision or None).
# Panel members come before the panel's combined judgement, which is the one that counts.
PAIRS: list[tuple[str, str, Any, str | None, str | None]] = [
    ("conv", "above the threshold", 9.0, None, None),               # kept by the judge
    ("conv", "below the threshold", 3.0, None, None),               # dropped by the judge
    ("conv", "gated, an old score", 9.0, "drop", None),             # dropped by a gate
    ("conv", "gated then restored", 2.0, "drop", "accept"),         # kept by a person
    ("conv", "kept then rejected", 8.0, None, "reject"),            # dropped by a person
    ("detail", "panel says no", [9.0, 4.0, 4.0], None, None),       # combined (min) 4: dropped
    ("detail", "panel says yes", [8.0, 9.0, 8.5], None, None),      # combined (mean) 8.5: kept
    ("detail", "flagged", 8.0, "flag", None),                       # kept, and flagged
    ("detail", "no readable score", None, None, None),              # unjudged
    ("short", "a dataset's answer", None, None, None),              # short answer: kept
    ("reason", "exactly the threshold", 7.0, None, None),           # kept
]
EXPECTED = {"pairs": 11, "kept": 6, "dropped": 4, "unjudged": 1, "judged": 8, "flagged": 1,
            "gated": 1, "below_threshold": 2, "rejected": 1}
GENERATIONS = {  # key -> (id, image, task, prompt version)
    "old": (1, 4, "complex_reasoning", "v0"),   # replaced by "reason": counts nowhere
    "conv": (2, 1, "conversation", "v1"),
    "detail": (3, 2, "detail", "v1"),
    "short": (4, 3, "short_answer", "facts"),
    "reason": (5, 4, "complex_reasoning", "v1"),
}


def build_store(db: Path) -> None:
    Store(db).close()
    now = time.time()
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO runs (id, started_at, finished_at, status, total_units, config) "
                     "VALUES (1, ?, ?, 'finished', 5, '{\"generation\": {\"model\": \"fake\"}}')",
                     (now - 60, now))
        conn.executemany("INSERT INTO images (id, file_name, width, height) "
                         "VALUES (?, ?, 640, 480)",
                         [(i, f"{i:012d}.jpg") for i in range(1, 5)])
        conn.executemany("INSERT INTO captions (image_id, idx, text) VALUES (?, 0, 'A scene.')",
                         [(i,) for i in range(1, 5)])
        for gid, image, task, version in GENERATIONS.values():
            conn.execute("INSERT INTO generations (id, image_id, task, prompt_version, model, "
                         "status, raw, problems, purpose, created_at) "
                         "VALUES (?, ?, ?, ?, 'fake', 'ok', '', '[]', 'run', ?)",
                         (gid, image, task, version, now))
        conn.execute("INSERT INTO pairs (generation_id, idx, question, answer) "
                     "VALUES (1, 0, 'superseded?', 'Yes, by a newer generation.')")
        conn.execute("INSERT INTO judgements (pair_id, generation_id, score, reason, "
                     "prompt_version, model, created_at) VALUES (1, 1, 9, '', 'j', 'fake', ?)",
                     (now,))
        position: Counter[str] = Counter()
        for key, question, score, gate, decision in PAIRS:
            gid = GENERATIONS[key][0]
            pair_id = conn.execute(
                "INSERT INTO pairs (generation_id, idx, question, answer) VALUES (?, ?, ?, ?)",
                (gid, position[key], question, f"An answer: {question}.")).lastrowid
            position[key] += 1
            for member in (score if isinstance(score, list) else [score] if score else []):
                conn.execute("INSERT INTO judgements (pair_id, generation_id, score, reason, "
                             "prompt_version, model, created_at) VALUES (?, ?, ?, 'r', 'j', "
                             "'fake', ?)", (pair_id, gid, member, now))
            if key == "detail" and score is None:
                conn.execute("INSERT INTO judgements (pair_id, generation_id, score, reason, "
                             "prompt_version, model, created_at) VALUES (?, ?, NULL, '', 'j', "
                             "'fake', ?)", (pair_id, gid, now))
            if gate:
                conn.execute("INSERT INTO pair_gates (pair_id, rule, action, reason) "
                             "VALUES (?, 'placeholder', ?, 'test')", (pair_id, gate))
            if decision:
                conn.execute("INSERT INTO reviews (pair_id, decision, created_at) VALUES (?, ?, ?)",
                             (pair_id, decision, now))
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('judge_threshold', ?)", (str(THRESHOLD),))
    conn.close()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    db = tmp_path / "every.db"
    build_store(db)
    return db


def test_status_export_and_views_agree(store_path: Path, tmp_path: Path,
                                       run_cli: Callable[..., tuple[int, str, str]]) -> None:
    code, out, err = run_cli("status", "--db", store_path, "--json")
    assert code == ExitCode.OK, err
    report = json.loads(out)
    assert {name: report[f"{name}_pairs" if name != "pairs" else "pairs"]
            for name in EXPECTED} == EXPECTED
    for fmt in ("llava", "jsonl"):
        out_file = tmp_path / f"out.{fmt}"
        assert run_cli("export", "--db", store_path, "--format", fmt, "--out", out_file)[0] == 0
        text = out_file.read_text(encoding="utf-8")
        records = json.loads(text) if fmt == "llava" else [json.loads(x) for x in text.splitlines()]
        assert sum(len(r["conversations"]) // 2 for r in records) == EXPECTED["kept"]
    with sqlite3.connect(store_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM kept_pairs").fetchone()[0] == EXPECTED["kept"]
        by_verdict = dict(conn.execute(
            "SELECT verdict, COUNT(*) FROM pair_verdicts GROUP BY verdict").fetchall())
        by_whom = dict(conn.execute("SELECT dropped_by, COUNT(*) FROM pair_verdicts "
                                    "WHERE dropped_by IS NOT NULL GROUP BY dropped_by").fetchall())
        judged, flagged = conn.execute(
            "SELECT SUM(judged), SUM(flagged) FROM pair_verdicts").fetchone()
    conn.close()
    assert by_verdict == {k: EXPECTED[k] for k in ("kept", "dropped", "unjudged")}
    assert by_whom == {"judge": EXPECTED["below_threshold"], "gate": EXPECTED["gated"],
                       "human": EXPECTED["rejected"]}
    assert (judged, flagged) == (EXPECTED["judged"], EXPECTED["flagged"])


def test_review_lab_monitor_and_analyze_agree(store_path: Path) -> None:
    with Store(store_path) as store:
        rows = sample_page(store, SampleFilter(), THRESHOLD, limit=100).rows
        assert sum(r.pairs for r in rows) == EXPECTED["pairs"]
        assert sum(r.kept for r in rows) == EXPECTED["kept"]
        assert sum(r.dropped for r in rows) == EXPECTED["dropped"]
        assert sum(r.unjudged for r in rows) == EXPECTED["unjudged"]
        assert sum(r.scored for r in rows) == EXPECTED["judged"]
        assert sum(r.flagged for r in rows) == EXPECTED["flagged"]
        assert sum(r.gated for r in rows) == EXPECTED["gated"]
        verdicts = Counter(p.verdict for r in rows
                           for p in pair_views(store, r.generation_id, THRESHOLD))
        assert verdicts == {k: EXPECTED[k] for k in ("kept", "dropped", "unjudged")}
        for state, wanted in (("kept", 4), ("dropped", 2), ("unjudged", 1), ("gated", 1),
                              ("flagged", 1)):
            listed = sample_page(store, SampleFilter(state=state), THRESHOLD, limit=100).rows
            assert len(listed) == wanted, state  # samples holding a pair of that verdict

        # The lab compares prompt versions over every generation each made, replaced ones
        # too, so the replaced generation's version has a row of its own.
        lab = [v for task in ("conversation", "detail", "complex_reasoning", "short_answer")
               for v in version_stats(store, task, THRESHOLD) if v.version != "v0"]
        assert sum(v.kept for v in lab) == EXPECTED["kept"]
        assert sum(v.scored for v in lab) == EXPECTED["judged"]

        config = load_config(None)
        snapshot = StoreReader(store, config).snapshot(with_cost=False)
        assert (snapshot.scores.kept, snapshot.scores.judged) == (EXPECTED["kept"],
                                                                  EXPECTED["judged"])
        by_sample = {s.generation_id: s.kept for s in snapshot.samples}
        assert by_sample[GENERATIONS["conv"][0]] == 2   # the rejected pair is not kept

        figures = analyze(store, THRESHOLD)
        assert figures.datasets["ours"][ALL].pairs == EXPECTED["kept"]
        assert figures.judge.judged == EXPECTED["judged"]
        assert figures.judge.histogram["gated"] == EXPECTED["gated"]
        assert figures.judge.histogram["unjudged"] == EXPECTED["unjudged"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_monitor_in_the_app_shows_the_same_counts(store_path: Path,
                                                            tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace(
        f'db = "{tmp_path / "run.db"}"', f'db = "{store_path}"'))
    app = make_app(config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status == "finished", "the store's run")
        await wait_for(pilot, lambda: app.state.judged_pairs == EXPECTED["judged"],
                       "the judged pairs")
        assert app.state.kept_pairs == EXPECTED["kept"]
        await pilot.press("r")  # review, as a person opens it
        await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen)
                       and len(app.screen.page.rows) == 4, "the review list")
        rows = app.screen.page.rows  # type: ignore[attr-defined]
        assert sum(r.kept for r in rows) == EXPECTED["kept"]
        assert sum(r.dropped for r in rows) == EXPECTED["dropped"]
        assert sum(r.unjudged for r in rows) == EXPECTED["unjudged"]
        assert sum(r.scored for r in rows) == EXPECTED["judged"]
        assert sum(r.flagged for r in rows) == EXPECTED["flagged"]
