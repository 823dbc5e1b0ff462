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

from visinstruct.core.store.migrate import APPLICATION, Migration, latest_version

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
    db.table("baseline_conversations").create_index(["image_id", "task"], index_name="baseline_image")
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
    # As KEPT_SQL: accepted, or not gated and scored at least the last run's threshold
    # (meta.judge_threshold, else 7).
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


# Append only (see the module docstring). Entries: (number, title, function or SQL script).
MIGRATIONS: tuple[Migration, ...] = (
    (1, "initial schema", _initial),
    (
        2,
        "quality gates: a verdict per gated or flagged pair; the finish reason of generations",
        """
        CREATE TABLE pair_gates (
            id INTEGER PRIMARY KEY,
            pair_id INTEGER NOT NULL REFERENCES pairs(id),
            rule TEXT NOT NULL,              -- cut_off | prompt_copy | placeholder | ...
            action TEXT NOT NULL,            -- drop (never judged, never kept) | flag (marked only)
            reason TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX pair_gates_pair ON pair_gates(pair_id, action);
        CREATE INDEX pair_gates_rule ON pair_gates(rule, action);
        ALTER TABLE generations ADD COLUMN finish_reason TEXT NOT NULL DEFAULT '';
        DROP VIEW pair_state;
        CREATE VIEW pair_state AS
            SELECT p.id AS pair_id, p.generation_id, g.image_id, g.task, g.prompt_version,
                   g.model, p.idx,
                   COALESCE(e.question, p.question) AS question,
                   COALESCE(e.answer, p.answer) AS answer,
                   p.question AS original_question, p.answer AS original_answer,
                   j.score, j.reason, d.decision, e.id IS NOT NULL AS edited,
                   x.rule AS gate_rule, x.reason AS gate_reason
            FROM pairs p
            JOIN current_generations g ON g.id = p.generation_id
            LEFT JOIN judgements j ON j.id = (
                SELECT MAX(id) FROM judgements WHERE pair_id = p.id)
            LEFT JOIN reviews d ON d.id = (
                SELECT MAX(id) FROM reviews WHERE pair_id = p.id AND decision IN ('accept', 'reject'))
            LEFT JOIN reviews e ON e.id = (
                SELECT MAX(id) FROM reviews WHERE pair_id = p.id AND decision = 'edit')
            LEFT JOIN pair_gates x ON x.id = (
                SELECT MIN(id) FROM pair_gates WHERE pair_id = p.id AND action = 'drop');
        """,
    ),
    (
        4,
        "GQA and VQAv2 sources: source ids, scene graphs, facts",
        """
        ALTER TABLE images ADD COLUMN source_id TEXT NOT NULL DEFAULT '';
        ALTER TABLE images ADD COLUMN location TEXT NOT NULL DEFAULT '';
        ALTER TABLE images ADD COLUMN weather TEXT NOT NULL DEFAULT '';
        CREATE INDEX images_source ON images(source, source_id);
        -- A GQA image is one row: its own id is unique within its source (COCO rows have '').
        CREATE UNIQUE INDEX images_source_id ON images(source, source_id) WHERE source_id != '';
        CREATE TABLE objects (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id),
            idx INTEGER NOT NULL,
            object_key TEXT NOT NULL,        -- the scene graph's own object id
            name TEXT NOT NULL,
            x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
            attributes TEXT NOT NULL DEFAULT '[]'   -- JSON list of strings
        );
        CREATE INDEX objects_image ON objects(image_id);
        CREATE TABLE relations (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id),
            subject_idx INTEGER NOT NULL,    -- objects.idx of the same image
            name TEXT NOT NULL,
            object_idx INTEGER NOT NULL
        );
        CREATE INDEX relations_image ON relations(image_id);
        CREATE TABLE facts (
            id INTEGER PRIMARY KEY,          -- file order: the order short answers are asked in
            image_id INTEGER NOT NULL REFERENCES images(id),
            source TEXT NOT NULL,            -- vqa | gqa
            question_id TEXT NOT NULL,
            question TEXT NOT NULL,
            answer TEXT NOT NULL
        );
        CREATE INDEX facts_image ON facts(image_id);
        """,
    ),
    (
        5,
        "running tallies the monitor reads instead of scanning the ledger and the judgements",
        """
        CREATE TABLE call_tally (
            run_id INTEGER NOT NULL,
            model TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            status TEXT NOT NULL,
            backpressure INTEGER NOT NULL,
            n INTEGER NOT NULL DEFAULT 0,
            tokens_in INTEGER NOT NULL DEFAULT 0,
            tokens_out INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (run_id, model, endpoint, status, backpressure)
        );
        INSERT INTO call_tally
            SELECT COALESCE(run_id, 0), model, COALESCE(endpoint, ''), status,
                   COALESCE(error_kind, '') = 'backpressure', COUNT(*),
                   SUM(COALESCE(tokens_in, 0)), SUM(COALESCE(tokens_out, 0))
            FROM llm_calls GROUP BY 1, 2, 3, 4, 5;
        CREATE TRIGGER call_tally_insert AFTER INSERT ON llm_calls BEGIN
            INSERT INTO call_tally VALUES (
                COALESCE(NEW.run_id, 0), NEW.model, COALESCE(NEW.endpoint, ''), NEW.status,
                COALESCE(NEW.error_kind, '') = 'backpressure', 1,
                COALESCE(NEW.tokens_in, 0), COALESCE(NEW.tokens_out, 0))
            ON CONFLICT (run_id, model, endpoint, status, backpressure) DO UPDATE SET
                n = n + 1, tokens_in = tokens_in + excluded.tokens_in,
                tokens_out = tokens_out + excluded.tokens_out;
        END;
        CREATE TRIGGER call_tally_update AFTER UPDATE ON llm_calls BEGIN
            UPDATE call_tally SET n = n - 1,
                tokens_in = tokens_in - COALESCE(OLD.tokens_in, 0),
                tokens_out = tokens_out - COALESCE(OLD.tokens_out, 0)
            WHERE run_id = COALESCE(OLD.run_id, 0) AND model = OLD.model
              AND endpoint = COALESCE(OLD.endpoint, '') AND status = OLD.status
              AND backpressure = (COALESCE(OLD.error_kind, '') = 'backpressure');
            INSERT INTO call_tally VALUES (
                COALESCE(NEW.run_id, 0), NEW.model, COALESCE(NEW.endpoint, ''), NEW.status,
                COALESCE(NEW.error_kind, '') = 'backpressure', 1,
                COALESCE(NEW.tokens_in, 0), COALESCE(NEW.tokens_out, 0))
            ON CONFLICT (run_id, model, endpoint, status, backpressure) DO UPDATE SET
                n = n + 1, tokens_in = tokens_in + excluded.tokens_in,
                tokens_out = tokens_out + excluded.tokens_out;
        END;
        CREATE TABLE score_tally (
            score REAL NOT NULL PRIMARY KEY,  -- -1: no readable score
            n INTEGER NOT NULL DEFAULT 0
        );
        INSERT INTO score_tally
            SELECT COALESCE(j.score, -1), COUNT(*) FROM judgements j
            JOIN generations g ON g.id = j.generation_id WHERE g.purpose = 'run' GROUP BY 1;
        CREATE TABLE unit_tally (
            model TEXT NOT NULL PRIMARY KEY,  -- the generation model
            done INTEGER NOT NULL DEFAULT 0
        );
        -- A unit is done once its generation is judged, unparseable, made from facts (never
        -- judged) or has every pair dropped by a gate (nothing left to judge).
        INSERT INTO unit_tally
            SELECT model, SUM(n) FROM (
                SELECT g.model AS model, COUNT(DISTINCT j.generation_id) AS n FROM judgements j
                JOIN generations g ON g.id = j.generation_id WHERE g.purpose = 'run' GROUP BY 1
                UNION ALL
                SELECT model, COUNT(*) FROM generations
                WHERE purpose = 'run' AND (status <> 'ok' OR model = 'facts') GROUP BY 1
                UNION ALL
                SELECT g.model, COUNT(*) FROM generations g
                WHERE g.purpose = 'run' AND g.status = 'ok' AND g.model <> 'facts'
                  AND EXISTS (SELECT 1 FROM pairs p WHERE p.generation_id = g.id)
                  AND NOT EXISTS (SELECT 1 FROM pairs p WHERE p.generation_id = g.id
                      AND NOT EXISTS (SELECT 1 FROM pair_gates x
                                      WHERE x.pair_id = p.id AND x.action = 'drop'))
                  AND NOT EXISTS (SELECT 1 FROM judgements j WHERE j.generation_id = g.id)
                GROUP BY 1)
            GROUP BY model;
        CREATE TRIGGER judgement_tally AFTER INSERT ON judgements BEGIN
            INSERT INTO score_tally
                SELECT COALESCE(NEW.score, -1), 1 FROM generations g
                WHERE g.id = NEW.generation_id AND g.purpose = 'run'
            ON CONFLICT (score) DO UPDATE SET n = n + 1;
            INSERT INTO unit_tally
                SELECT g.model, 1 FROM generations g
                WHERE g.id = NEW.generation_id AND g.purpose = 'run' AND NOT EXISTS (
                    SELECT 1 FROM judgements o
                    WHERE o.generation_id = NEW.generation_id AND o.id <> NEW.id)
            ON CONFLICT (model) DO UPDATE SET done = done + 1;
        END;
        CREATE TRIGGER parse_failure_tally AFTER INSERT ON generations
        WHEN NEW.purpose = 'run' AND (NEW.status <> 'ok' OR NEW.model = 'facts') BEGIN
            INSERT INTO unit_tally VALUES (NEW.model, 1)
            ON CONFLICT (model) DO UPDATE SET done = done + 1;
        END;
        -- Gates are written after their pairs: the drop that gates a generation's last
        -- passing pair makes the unit done, and removing it (a gate change) undoes that.
        CREATE TRIGGER gate_tally_insert AFTER INSERT ON pair_gates
        WHEN NEW.action = 'drop' AND NOT EXISTS (SELECT 1 FROM pair_gates o
            WHERE o.pair_id = NEW.pair_id AND o.action = 'drop' AND o.id <> NEW.id) BEGIN
            INSERT INTO unit_tally
                SELECT g.model, 1 FROM pairs p JOIN generations g ON g.id = p.generation_id
                WHERE p.id = NEW.pair_id AND g.purpose = 'run' AND g.status = 'ok'
                  AND g.model <> 'facts'
                  AND NOT EXISTS (SELECT 1 FROM pairs q WHERE q.generation_id = g.id
                      AND NOT EXISTS (SELECT 1 FROM pair_gates x
                                      WHERE x.pair_id = q.id AND x.action = 'drop'))
                  AND NOT EXISTS (SELECT 1 FROM judgements j WHERE j.generation_id = g.id)
            ON CONFLICT (model) DO UPDATE SET done = done + 1;
        END;
        CREATE TRIGGER gate_tally_delete AFTER DELETE ON pair_gates
        WHEN OLD.action = 'drop' AND NOT EXISTS (SELECT 1 FROM pair_gates o
            WHERE o.pair_id = OLD.pair_id AND o.action = 'drop') BEGIN
            UPDATE unit_tally SET done = done - 1 WHERE model = (
                SELECT g.model FROM pairs p JOIN generations g ON g.id = p.generation_id
                WHERE p.id = OLD.pair_id AND g.purpose = 'run' AND g.status = 'ok'
                  AND g.model <> 'facts'
                  AND NOT EXISTS (SELECT 1 FROM pairs q WHERE q.generation_id = g.id
                      AND q.id <> OLD.pair_id AND NOT EXISTS (SELECT 1 FROM pair_gates x
                          WHERE x.pair_id = q.id AND x.action = 'drop'))
                  AND NOT EXISTS (SELECT 1 FROM judgements j WHERE j.generation_id = g.id));
        END;
        """,
    ),
    (
        6,
        "bedrock batch jobs and their records",
        """
        CREATE TABLE batch_jobs (
            id INTEGER PRIMARY KEY,
            arn TEXT NOT NULL UNIQUE,
            job_id TEXT NOT NULL,            -- the ARN's last part, the folder of its outputs
            run_id INTEGER,
            stage TEXT NOT NULL,             -- generate | judge
            model TEXT NOT NULL,             -- the [models.X] name
            model_id TEXT NOT NULL,
            region TEXT NOT NULL,
            token TEXT NOT NULL,             -- clientRequestToken, derived from the records
            input_uri TEXT NOT NULL,
            output_uri TEXT NOT NULL,
            records INTEGER NOT NULL,
            status TEXT NOT NULL,            -- Bedrock's: Submitted ... Completed, Failed, Stopped
            message TEXT,
            submitted_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            ended_at REAL,
            processed INTEGER NOT NULL DEFAULT 0,   -- 1 once its output is in the ledger
            ok_records INTEGER NOT NULL DEFAULT 0,
            error_records INTEGER NOT NULL DEFAULT 0,
            tokens_in INTEGER NOT NULL DEFAULT 0,
            tokens_out INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX batch_jobs_stage ON batch_jobs(processed, stage);
        CREATE TABLE batch_records (
            job INTEGER NOT NULL REFERENCES batch_jobs(id),
            record_id TEXT NOT NULL,         -- the recordId in the JSONL
            key TEXT NOT NULL,               -- the ledger key of the call it stands for
            image_id INTEGER NOT NULL,
            task TEXT NOT NULL,
            prompt_version TEXT NOT NULL,
            generation_id INTEGER NOT NULL DEFAULT 0,   -- judge records: what is judged
            request_hash TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (job, record_id)
        );
        CREATE INDEX batch_records_key ON batch_records(key);
        """,
    ),
    (7, "views kept_pairs and run_figures; full-text search over pairs", _browsable),
    (
        8,
        "blind review decisions",
        """
        -- 1: an accept/reject made in blind review (score and gate verdicts hidden), which counts
        -- like any decision, and only blind ones measure the judge against a human.
        ALTER TABLE reviews ADD COLUMN blind INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX reviews_blind ON reviews(blind, pair_id);
        """,
    ),
)

LATEST_VERSION = latest_version(MIGRATIONS)
