"""Gate verdicts in the store: a store from before the gates is gated on its next run, for free."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from visinstruct.core.config import GatesConfig
from visinstruct.core.pipeline.gating import flag_templates, regate_if_changed
from visinstruct.core.store import database
from visinstruct.core.store.database import Store
from visinstruct.core.store.queries import gate_counts, status_counts
from visinstruct.core.store.schema import MIGRATIONS
from visinstruct.core.text.prompts import load_prompt

PAIRS = [("What colour is the bus?", "The bus is red."), ("...", "..."),
         ("Where is the bus?", "It waits at the stop on the corner.")]


def old_store(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store made by migration 1 alone, with two images' judged pairs (everything scored 9)."""
    monkeypatch.setattr(database, "MIGRATIONS", MIGRATIONS[:1])
    prompt = load_prompt("conversation")

    def fill(conn: object) -> None:
        execute = conn.execute  # type: ignore[attr-defined]
        execute("INSERT INTO prompts VALUES (?, 'conversation', 'conversation', ?, 0)",
                (prompt.version, prompt.text))
        for image_id in (1, 2):
            execute("INSERT INTO images (id, file_name, width, height) VALUES (?, 'x.jpg', 1, 1)",
                    (image_id,))
            execute("INSERT INTO captions (image_id, idx, text) VALUES (?, 0, 'A red bus.')",
                    (image_id,))
            gid = execute(
                "INSERT INTO generations (image_id, task, prompt_version, model, status, raw, "
                "problems, created_at) VALUES (?, 'conversation', ?, 'm', 'ok', '', ?, 0)",
                (image_id, prompt.version, json.dumps([]))).lastrowid
            for idx, (question, answer) in enumerate(PAIRS):
                pair_id = execute("INSERT INTO pairs (generation_id, idx, question, answer) "
                                  "VALUES (?, ?, ?, ?)", (gid, idx, question, answer)).lastrowid
                execute("INSERT INTO judgements (pair_id, generation_id, score, prompt_version, "
                        "model, created_at) VALUES (?, ?, 9, 'j', 'm', 0)", (pair_id, gid))

    with Store(path) as store:
        store.write_sync(fill)
        assert store.scalar("SELECT COUNT(*) FROM judgements WHERE score >= 7") == 6
    monkeypatch.undo()


def test_an_old_store_is_gated_when_first_run_with_gates(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    old_store(tmp_path / "old.db", monkeypatch)
    with Store(tmp_path / "old.db") as store:  # migration 2 applies here
        assert regate_if_changed(store, GatesConfig()) == 6
        counts = status_counts(store, 7)
        assert (counts["kept_pairs"], counts["dropped_pairs"]) == (4, 2)
        assert gate_counts(store)["dropped"] == {"placeholder": 2}
        # Same settings again: nothing to do. Template flags: the same pairs on both images.
        assert regate_if_changed(store, GatesConfig()) == 0
        assert flag_templates(store, GatesConfig(template_images=2)) == 4
        assert gate_counts(store)["flagged"] == {"duplicate": 4}
        # Turning the rule off lets the placeholders back in, with the scores they already had.
        assert regate_if_changed(store, GatesConfig(placeholder=False)) == 6
        assert status_counts(store, 7)["kept_pairs"] == 6
        assert gate_counts(store)["flagged"] == {"duplicate": 4}  # template flags stay
