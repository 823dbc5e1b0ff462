"""The store's schema as numbered migrations; each runs once, in order, inside a transaction."""

from __future__ import annotations

APPLICATION = "visinstruct"

# Append only: never edit a migration that has shipped; add a new one.
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "initial schema",
        """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            started_at REAL NOT NULL,
            finished_at REAL,
            status TEXT NOT NULL,            -- running | finished | interrupted | failed | budget
            pid INTEGER,
            host TEXT,
            config TEXT,
            total_units INTEGER DEFAULT 0,
            message TEXT
        );
        CREATE TABLE images (
            id INTEGER PRIMARY KEY,          -- the COCO image id
            file_name TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            split TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL DEFAULT 'coco'
        );
        CREATE TABLE captions (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id),
            idx INTEGER NOT NULL,
            text TEXT NOT NULL
        );
        CREATE INDEX captions_image ON captions(image_id);
        CREATE TABLE boxes (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id),
            idx INTEGER NOT NULL,
            category TEXT NOT NULL,
            x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
            crowd INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX boxes_image ON boxes(image_id);
        CREATE TABLE baseline_conversations (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL,       -- no FK: the baseline is indexed before the images
            task TEXT NOT NULL,
            record_id TEXT NOT NULL,
            pairs TEXT NOT NULL              -- JSON [[question, answer], ...]
        );
        CREATE INDEX baseline_image ON baseline_conversations(image_id, task);
        CREATE TABLE prompts (
            version TEXT PRIMARY KEY,        -- content hash
            name TEXT NOT NULL,
            task TEXT NOT NULL,
            text TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE TABLE active_prompts (
            name TEXT PRIMARY KEY,
            version TEXT NOT NULL REFERENCES prompts(version),
            chosen_by TEXT NOT NULL DEFAULT 'package'   -- package | user (the prompt lab)
        );
        CREATE TABLE llm_calls (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL,               -- idempotency key: stage|image|task|prompt|model
            run_id INTEGER,
            image_id INTEGER,
            task TEXT,
            stage TEXT NOT NULL,             -- generate | judge | evaluate | answer
            model TEXT NOT NULL,
            endpoint TEXT,
            prompt_version TEXT,
            request_hash TEXT,
            attempt INTEGER NOT NULL DEFAULT 1,
            status TEXT NOT NULL,            -- in_flight | ok | error | abandoned
            latency_ms REAL,
            tokens_in INTEGER DEFAULT 0,
            tokens_out INTEGER DEFAULT 0,
            error_kind TEXT,                 -- backpressure | transient | permanent
            error_class TEXT,
            error TEXT,
            raw_response TEXT,
            started_at REAL NOT NULL,
            finished_at REAL
        );
        CREATE INDEX llm_calls_key ON llm_calls(key);
        CREATE INDEX llm_calls_status ON llm_calls(status);
        CREATE TABLE generations (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id),
            task TEXT NOT NULL,
            prompt_version TEXT NOT NULL,
            model TEXT NOT NULL,
            call_id INTEGER REFERENCES llm_calls(id),
            status TEXT NOT NULL,            -- ok | parse_failure
            raw TEXT,
            problems TEXT,
            purpose TEXT NOT NULL DEFAULT 'run',  -- run | lab (prompt lab trials never export)
            created_at REAL NOT NULL,
            UNIQUE (image_id, task, prompt_version, model, purpose)
        );
        CREATE INDEX generations_task ON generations(task, status);
        CREATE INDEX generations_image ON generations(image_id, task, status);
        CREATE TABLE pairs (
            id INTEGER PRIMARY KEY,
            generation_id INTEGER NOT NULL REFERENCES generations(id),
            idx INTEGER NOT NULL,
            question TEXT NOT NULL,
            answer TEXT NOT NULL
        );
        CREATE INDEX pairs_generation ON pairs(generation_id);
        CREATE TABLE judgements (
            id INTEGER PRIMARY KEY,
            pair_id INTEGER NOT NULL REFERENCES pairs(id),
            generation_id INTEGER NOT NULL REFERENCES generations(id),
            score REAL,                      -- NULL: unjudged (no readable score)
            reason TEXT,
            call_id INTEGER REFERENCES llm_calls(id),
            prompt_version TEXT NOT NULL,
            model TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX judgements_pair ON judgements(pair_id);
        CREATE INDEX judgements_generation ON judgements(generation_id);
        CREATE TABLE evaluations (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL,
            task TEXT NOT NULL,
            mode TEXT NOT NULL,              -- conversation | answers
            item INTEGER NOT NULL DEFAULT 0, -- question index in answers mode
            shown_first TEXT NOT NULL,       -- ours | baseline
            ours_score REAL,
            baseline_score REAL,
            parsed INTEGER NOT NULL,
            rationale TEXT,
            call_id INTEGER REFERENCES llm_calls(id),
            prompt_version TEXT,
            model TEXT,
            generation_id INTEGER,
            created_at REAL NOT NULL
        );
        CREATE INDEX evaluations_image ON evaluations(image_id, task);
        CREATE TABLE reviews (
            id INTEGER PRIMARY KEY,
            pair_id INTEGER NOT NULL REFERENCES pairs(id),
            decision TEXT NOT NULL,          -- accept | reject | edit
            question TEXT,
            answer TEXT,
            created_at REAL NOT NULL
        );
        CREATE INDEX reviews_pair ON reviews(pair_id, decision);
        CREATE VIEW current_generations AS
            SELECT g.* FROM generations g
            WHERE g.status = 'ok' AND g.purpose = 'run' AND g.id = (
                SELECT MAX(g2.id) FROM generations g2
                WHERE g2.image_id = g.image_id AND g2.task = g.task AND g2.status = 'ok'
                  AND g2.purpose = 'run');
        CREATE VIEW pair_state AS
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
                SELECT MAX(id) FROM reviews WHERE pair_id = p.id AND decision = 'edit');
        """,
    ),
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

LATEST_VERSION = MIGRATIONS[-1][0]
