"""The store's schema: numbered migrations, applied once each, in ascending order.

How to add one: append `(number, "what it does", body)` to MIGRATIONS, where body is
either a function taking a `sqlite_utils.Database` or an SQL script (statements separated
by `;`; trigger bodies are fine). `store/migrate.py` runs each migration inside one
transaction with the `meta` row update, so a failure leaves the store as it was: never
call `conn.executescript()` or `conn.commit()` in a migration (sqlite-utils 4's own
methods keep the open transaction). Never edit a migration that has shipped; add one.
Numbers are reserved per issue, so gaps are normal; add columns with
`ALTER TABLE ... ADD COLUMN` (with a DEFAULT) and recreate a changed view with DROP VIEW /
CREATE VIEW. Code must keep working on a store made by migration 1 and any one other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from visinstruct.core.store import pair_tally, pictures, schema_sql
from visinstruct.core.store.migrate import APPLICATION, Migration, latest_version
from visinstruct.core.store.verdicts import (
    STORED_THRESHOLD,
    PairColumns,
    dropped_by_sql,
    judged_sql,
    verdict_sql,
)

if TYPE_CHECKING:
    from sqlite_utils import Database

__all__ = ["APPLICATION", "LATEST_VERSION", "MIGRATIONS"]

# Column types as sqlite-utils names them: int INTEGER, float REAL, str TEXT.
_ID = {"id": int}


def _initial(db: Database) -> None:
    """Sources, prompts, the call ledger, generations, pairs, judgements, evaluations, reviews."""
    db.create_table("runs", {**_ID, "started_at": float, "finished_at": float,
                             "status": str,  # running | finished | interrupted | failed | budget
                             "pid": int, "host": str, "config": str, "total_units": int,
                             "message": str},
                    pk="id", not_null={"started_at", "status"}, defaults={"total_units": 0})
    # id is the COCO image id.
    db.create_table("images", {**_ID, "file_name": str, "width": int, "height": int,
                               "split": str, "source": str},
                    pk="id", not_null={"file_name", "width", "height", "split", "source"},
                    defaults={"split": "", "source": "coco"})
    db.create_table("captions", {**_ID, "image_id": int, "idx": int, "text": str},
                    pk="id", not_null={"image_id", "idx", "text"},
                    foreign_keys=[("image_id", "images", "id")])
    db.table("captions").create_index(["image_id"], index_name="captions_image")
    db.create_table("boxes", {**_ID, "image_id": int, "idx": int, "category": str,
                              "x1": float, "y1": float, "x2": float, "y2": float, "crowd": int},
                    pk="id", not_null={"image_id", "idx", "category", "x1", "y1", "x2", "y2",
                                       "crowd"},
                    defaults={"crowd": 0}, foreign_keys=[("image_id", "images", "id")])
    db.table("boxes").create_index(["image_id"], index_name="boxes_image")
    # No foreign key on image_id: the baseline is indexed before the images.
    # pairs holds JSON [[question, answer], ...].
    db.create_table("baseline_conversations", {**_ID, "image_id": int, "task": str,
                                               "record_id": str, "pairs": str},
                    pk="id", not_null={"image_id", "task", "record_id", "pairs"})
    db.table("baseline_conversations").create_index(["image_id", "task"],
                                                    index_name="baseline_image")
    # version is the content hash of the prompt text.
    db.create_table("prompts", {"version": str, "name": str, "task": str, "text": str,
                                "created_at": float},
                    pk="version", not_null={"name", "task", "text", "created_at"})
    db.create_table("active_prompts", {"name": str, "version": str,
                                       "chosen_by": str},  # package | user (the prompt lab)
                    pk="name", not_null={"version", "chosen_by"},
                    defaults={"chosen_by": "package"},
                    foreign_keys=[("version", "prompts", "version")])
    db.create_table("llm_calls", {
        **_ID,
        "key": str,            # idempotency key: stage|image|task|prompt|model
        "run_id": int, "image_id": int, "task": str,
        "stage": str,          # generate | judge | evaluate | answer
        "model": str, "endpoint": str, "prompt_version": str, "request_hash": str,
        "attempt": int,
        "status": str,         # in_flight | ok | error | abandoned
        "latency_ms": float, "tokens_in": int, "tokens_out": int,
        "error_kind": str,     # backpressure | transient | permanent
        "error_class": str, "error": str, "raw_response": str,
        "started_at": float, "finished_at": float,
    }, pk="id", not_null={"key", "stage", "model", "attempt", "status", "started_at"},
        defaults={"attempt": 1, "tokens_in": 0, "tokens_out": 0})
    db.table("llm_calls").create_index(["key"], index_name="llm_calls_key")
    db.table("llm_calls").create_index(["status"], index_name="llm_calls_status")
    db.create_table("generations", {
        **_ID, "image_id": int, "task": str, "prompt_version": str, "model": str,
        "call_id": int,
        "status": str,         # ok | parse_failure
        "raw": str, "problems": str,
        "purpose": str,        # run | lab (prompt lab trials never export)
        "created_at": float,
    }, pk="id", not_null={"image_id", "task", "prompt_version", "model", "status", "purpose",
                          "created_at"},
        defaults={"purpose": "run"},
        foreign_keys=[("image_id", "images", "id"), ("call_id", "llm_calls", "id")])
    db.table("generations").create_index(["image_id", "task", "prompt_version", "model", "purpose"],
                                   index_name="generations_unique", unique=True)
    db.table("generations").create_index(["task", "status"], index_name="generations_task")
    db.table("generations").create_index(["image_id", "task", "status"],
                                   index_name="generations_image")
    db.create_table("pairs", {**_ID, "generation_id": int, "idx": int, "question": str,
                              "answer": str},
                    pk="id", not_null={"generation_id", "idx", "question", "answer"},
                    foreign_keys=[("generation_id", "generations", "id")])
    db.table("pairs").create_index(["generation_id"], index_name="pairs_generation")
    db.create_table("judgements", {
        **_ID, "pair_id": int, "generation_id": int,
        "score": float,        # NULL: unjudged (no readable score)
        "reason": str, "call_id": int, "prompt_version": str, "model": str, "created_at": float,
    }, pk="id", not_null={"pair_id", "generation_id", "prompt_version", "model", "created_at"},
        foreign_keys=[("pair_id", "pairs", "id"), ("generation_id", "generations", "id"),
                      ("call_id", "llm_calls", "id")])
    db.table("judgements").create_index(["pair_id"], index_name="judgements_pair")
    db.table("judgements").create_index(["generation_id"], index_name="judgements_generation")
    db.create_table("evaluations", {
        **_ID, "image_id": int, "task": str,
        "mode": str,           # conversation | answers
        "item": int,           # question index in answers mode
        "shown_first": str,    # ours | baseline
        "ours_score": float, "baseline_score": float, "parsed": int, "rationale": str,
        "call_id": int, "prompt_version": str, "model": str, "generation_id": int,
        "created_at": float,
    }, pk="id", not_null={"image_id", "task", "mode", "item", "shown_first", "parsed",
                          "created_at"},
        defaults={"item": 0}, foreign_keys=[("call_id", "llm_calls", "id")])
    db.table("evaluations").create_index(["image_id", "task"], index_name="evaluations_image")
    db.create_table("reviews", {
        **_ID, "pair_id": int,
        "decision": str,       # accept | reject | edit
        "question": str, "answer": str, "created_at": float,
    }, pk="id", not_null={"pair_id", "decision", "created_at"},
        foreign_keys=[("pair_id", "pairs", "id")])
    db.table("reviews").create_index(["pair_id", "decision"], index_name="reviews_pair")
    db.create_view("current_generations", """
        SELECT g.* FROM generations g
        WHERE g.status = 'ok' AND g.purpose = 'run' AND g.id = (
            SELECT MAX(g2.id) FROM generations g2
            WHERE g2.image_id = g.image_id AND g2.task = g.task AND g2.status = 'ok'
              AND g2.purpose = 'run')""")
    db.create_view("pair_state", """
        SELECT p.id AS pair_id, p.generation_id, g.image_id, g.task, g.prompt_version,
               g.model, p.idx,
               COALESCE(e.question, p.question) AS question,
               COALESCE(e.answer, p.answer) AS answer,
               p.question AS original_question, p.answer AS original_answer,
               j.score, j.reason, d.decision, e.id IS NOT NULL AS edited
        FROM pairs p
        JOIN current_generations g ON g.id = p.generation_id
        LEFT JOIN judgements j ON j.id = (
            SELECT MAX(id) FROM judgements WHERE pair_id = p.id)
        LEFT JOIN reviews d ON d.id = (
            SELECT MAX(id) FROM reviews WHERE pair_id = p.id AND decision IN ('accept', 'reject'))
        LEFT JOIN reviews e ON e.id = (
            SELECT MAX(id) FROM reviews WHERE pair_id = p.id AND decision = 'edit')""")


def _browsable(db: Database) -> None:
    """Views a Datasette or `sqlite-utils` user reads first, and full-text search over pairs."""
    # The kept_pairs of its day; migration 11 rebuilds it from store/verdicts.py's rules.
    db.create_view("kept_pairs", """
        SELECT s.* FROM pair_state s
        WHERE s.decision = 'accept' OR (s.decision IS NULL AND s.gate_rule IS NULL
              AND s.score IS NOT NULL
              AND s.score >= COALESCE((SELECT CAST(value AS REAL) FROM meta
                                       WHERE key = 'judge_threshold'), 7))""")
    db.create_view("run_figures", """
        SELECT r.id AS run_id, r.status, r.started_at, r.finished_at, r.total_units,
               (SELECT COUNT(*) FROM llm_calls c WHERE c.run_id = r.id) AS calls,
               (SELECT COUNT(*) FROM llm_calls c WHERE c.run_id = r.id
                  AND c.status = 'error') AS failed_calls,
               (SELECT COALESCE(SUM(c.tokens_in), 0) FROM llm_calls c
                  WHERE c.run_id = r.id) AS tokens_in,
               (SELECT COALESCE(SUM(c.tokens_out), 0) FROM llm_calls c
                  WHERE c.run_id = r.id) AS tokens_out,
               (SELECT ROUND(AVG(c.latency_ms), 1) FROM llm_calls c
                  WHERE c.run_id = r.id AND c.status = 'ok') AS mean_latency_ms
        FROM runs r""")
    # External-content FTS5 over pairs; store/search.py indexes new pairs before a search
    # (no triggers: they would cost the writer most of its time). Existing pairs now.
    db.table("pairs").enable_fts(["question", "answer"], fts_version="FTS5")
    db.execute("INSERT OR REPLACE INTO meta VALUES ('pairs_fts_upto', "
               "(SELECT COALESCE(MAX(id), 0) FROM pairs))")


VIEW_COLUMNS = PairColumns("s.score", "s.decision", "s.gate_rule IS NOT NULL", "s.task")


def _verdict_views(db: Database) -> None:
    """Every pair's verdict by the rules of `verdicts`, counted at the last run's threshold."""
    db.execute("DROP VIEW IF EXISTS kept_pairs")
    db.create_view("pair_verdicts", f"""
        SELECT s.*, {verdict_sql(STORED_THRESHOLD, VIEW_COLUMNS)} AS verdict,
               {dropped_by_sql(STORED_THRESHOLD, VIEW_COLUMNS)} AS dropped_by,
               {judged_sql(VIEW_COLUMNS)} AS judged,
               EXISTS (SELECT 1 FROM pair_gates x WHERE x.pair_id = s.pair_id
                       AND x.action = 'flag') AS flagged
        FROM pair_state s""")
    db.create_view("kept_pairs", "SELECT * FROM pair_verdicts WHERE verdict = 'kept'")


# Append only (see the module docstring). Entries: (number, title, function or SQL script).
MIGRATIONS: tuple[Migration, ...] = (
    (1, "initial schema", _initial),
    (2, "quality gates: a verdict per gated or flagged pair; the finish reason of generations",
     schema_sql.GATES),
    (4, "GQA and VQAv2 sources: source ids, scene graphs, facts",
     schema_sql.SCENES_AND_FACTS),
    (5, "running tallies the monitor reads instead of scanning the ledger and the judgements",
     schema_sql.MONITOR_TALLIES),
    (6, "bedrock batch jobs and their records",
     schema_sql.BATCH_JOBS),
    (7, "views kept_pairs and run_figures; full-text search over pairs", _browsable),
    (8, "blind review decisions",
     schema_sql.BLIND_REVIEWS),
    (10, "the call tally counts finished calls only (in flight: from the status index)",
     schema_sql.FINISHED_CALL_TALLY),
    (11, "view pair_verdicts (kept, dropped by whom, unjudged, judged, flagged); kept_pairs "
         "from it, short-answer records included", _verdict_views),
    (12, "no score tally: scores are counted by the verdict rules over the current pairs",
     schema_sql.NO_SCORE_TALLY),
    (13, "pair tally: the current pairs counted by score, decision, gate and kind, folded in "
         "by the writer up to marks in meta, so the monitor's first read costs no scan",
     pair_tally.PAIR_TALLY),
    (14, "pictures: how many each call sent, and the images whose picture could not be sent",
     pictures.PICTURES_SCHEMA),
    (18, "the call tally sums the pictures its calls carried; a run row keeps the units done "
         "when it started", schema_sql.PICTURES_AND_RUN_START),
)

LATEST_VERSION = latest_version(MIGRATIONS)
