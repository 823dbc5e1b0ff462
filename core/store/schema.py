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
        INSERT INTO unit_tally
            SELECT model, SUM(n) FROM (
                SELECT g.model AS model, COUNT(DISTINCT j.generation_id) AS n FROM judgements j
                JOIN generations g ON g.id = j.generation_id WHERE g.purpose = 'run' GROUP BY 1
                UNION ALL
                SELECT model, COUNT(*) FROM generations
                WHERE status = 'parse_failure' AND purpose = 'run' GROUP BY 1)
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
        WHEN NEW.status = 'parse_failure' AND NEW.purpose = 'run' BEGIN
            INSERT INTO unit_tally VALUES (NEW.model, 1)
            ON CONFLICT (model) DO UPDATE SET done = done + 1;
        END;
        """,
    ),
)

LATEST_VERSION = MIGRATIONS[-1][0]
