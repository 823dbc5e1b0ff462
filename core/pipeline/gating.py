"""Gate verdicts in the store: written with their pairs, redone when [gates] changes.

Templates (pairs repeated across many images) are flagged after the run.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict

from visinstruct.core.config import GatesConfig
from visinstruct.core.pipeline.rows import pair_ids
from visinstruct.core.records import Pair
from visinstruct.core.store.database import Store
from visinstruct.core.store.queries import load_images
from visinstruct.core.text.gates import DROP, FLAG, PromptText, Verdicts, gate_pairs, prompt_text
from visinstruct.core.text.prompts import parse_prompt

GATES_META = "gates_settings"
_PAGE = 500
# The dataset-wide template flag is the one `duplicate` verdict that is not a per-image drop.
_TEMPLATE = "rule = 'duplicate' AND action = 'flag'"


def gates_fingerprint(settings: GatesConfig) -> str:
    """The settings as stored in meta, to notice a changed [gates] on the next run."""
    return json.dumps(asdict(settings), sort_keys=True)


def insert_verdicts(conn: sqlite3.Connection, generation_id: int,
                    verdicts: Sequence[Verdicts], ids: dict[int, int] | None = None) -> None:
    """Store the verdicts of a generation's pairs (inside the write that inserted them).

    `ids` maps positions to pair ids when the caller knows them.
    """
    if not any(verdicts):
        return
    if ids is None:
        ids = pair_ids(conn, generation_id)
    conn.executemany(
        "INSERT INTO pair_gates (pair_id, rule, action, reason) VALUES (?, ?, ?, ?)",
        [(ids[idx], v.rule, v.action, v.reason)
         for idx, found in enumerate(verdicts) for v in found if idx in ids])


def stored_finish_reason(finish_reason: str, problems: str | None) -> str:
    """A generation's finish reason; rows from before it was stored only noted the cut."""
    if finish_reason:
        return finish_reason
    return "length" if "output was cut at max_tokens" in (problems or "") else "stop"


def regate_if_changed(store: Store, settings: GatesConfig) -> int:
    """Gate every stored run pair again if [gates] differs from the last run's; returns pairs seen.

    Gates are cheap and judgements stay stored, so a pair that newly passes is judged on
    this run, and one that passed before and passes again keeps its paid-for score.
    """
    fingerprint = gates_fingerprint(settings)
    if store.get_meta(GATES_META) == fingerprint:
        return 0
    prompts: dict[str, PromptText | None] = {}
    seen, after = 0, 0
    while True:
        rows = store.query(
            "SELECT id, image_id, task, prompt_version, finish_reason, problems FROM generations "
            "WHERE status = 'ok' AND purpose = 'run' AND id > ? ORDER BY id LIMIT ?",
            (after, _PAGE))
        if not rows:
            break
        after = rows[-1][0]
        ids = [row[0] for row in rows]
        marks = ",".join("?" * len(ids))
        pairs: dict[int, list[tuple[int, Pair]]] = defaultdict(list)
        for gid, pair_id, question, answer in store.query(
                f"SELECT generation_id, id, question, answer FROM pairs "
                f"WHERE generation_id IN ({marks}) ORDER BY generation_id, idx", ids):
            pairs[gid].append((pair_id, Pair(question, answer)))
        images = load_images(store, sorted({row[1] for row in rows}))
        inserts: list[tuple[int, str, str, str]] = []
        for gid, image_id, task, version, finish, problems in rows:
            if version not in prompts:
                prompts[version] = _prompt(store, version)
            found = pairs.get(gid, [])
            verdicts = gate_pairs([p for _, p in found], images[image_id], task, settings,
                                  prompt=prompts[version],
                                  finish_reason=stored_finish_reason(finish, problems))
            inserts.extend((pair_id, v.rule, v.action, v.reason)
                           for (pair_id, _), found_here in zip(found, verdicts, strict=False)
                           for v in found_here)
            seen += len(found)

        def write(conn: sqlite3.Connection, ids: list[int] = ids,
                  inserts: list[tuple[int, str, str, str]] = inserts) -> None:
            conn.execute(
                f"DELETE FROM pair_gates WHERE NOT ({_TEMPLATE}) AND pair_id IN "
                f"(SELECT id FROM pairs WHERE generation_id IN ({','.join('?' * len(ids))}))", ids)
            conn.executemany(
                "INSERT INTO pair_gates (pair_id, rule, action, reason) VALUES (?, ?, ?, ?)",
                inserts)

        store.write(write)
    store.flush()
    store.set_meta(GATES_META, fingerprint)
    return seen


def _prompt(store: Store, version: str) -> PromptText | None:
    text = store.scalar("SELECT text FROM prompts WHERE version = ?", (version,))
    if text is None:
        return None
    try:
        return prompt_text(parse_prompt(str(text), source=f"stored prompt {version}"))
    except Exception:  # noqa: BLE001 - an unreadable stored prompt only turns prompt_copy off
        return None


def flag_templates(store: Store, settings: GatesConfig) -> int:
    """Flag passing pairs repeated verbatim on `template_images` images or more; returns how many.

    Template collapse is a property of the whole dataset, so it is counted after the run's
    work instead of per reply, and flagged (never dropped): each copy may be a fine pair.
    """
    least = settings.template_images if settings.duplicate else 0
    # Case and end punctuation aside, the same words: what a template looks like in SQL.
    key_q, key_a = "lower(trim(p.question, ' .!?'))", "lower(trim(p.answer, ' .!?'))"
    passing = ("NOT EXISTS (SELECT 1 FROM pair_gates x WHERE x.pair_id = p.id "
               "AND x.action = 'drop')")
    run_pairs = ("FROM pairs p JOIN generations g ON g.id = p.generation_id "
                 f"WHERE g.status = 'ok' AND g.purpose = 'run' AND {passing}")
    sql = f"""
        INSERT INTO pair_gates (pair_id, rule, action, reason)
        SELECT p.id, 'duplicate', '{FLAG}',
               'the same pair is on ' || t.n || ' images word for word (template collapse)'
        FROM pairs p JOIN generations g ON g.id = p.generation_id
        JOIN (SELECT {key_q} AS q, {key_a} AS a, COUNT(DISTINCT g.image_id) AS n {run_pairs}
              GROUP BY q, a HAVING n >= ?) t ON t.q = {key_q} AND t.a = {key_a}
        WHERE g.status = 'ok' AND g.purpose = 'run' AND {passing}
    """

    def work(conn: sqlite3.Connection) -> int:
        conn.execute(f"DELETE FROM pair_gates WHERE {_TEMPLATE}")
        if least < 2:
            return 0
        return int(conn.execute(sql, (least,)).rowcount or 0)

    flagged: int = store.write_sync(work)
    return flagged


__all__ = ["DROP", "FLAG", "GATES_META", "flag_templates", "gate_pairs", "gates_fingerprint",
           "insert_verdicts", "regate_if_changed", "stored_finish_reason"]
