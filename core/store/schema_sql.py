"""The SQL of the migrations written as scripts (2, 4, 5, 6, 8, 10, 12, 18).

`schema.MIGRATIONS` orders them.
"""

# Migration 2: quality gates: a verdict per gated or flagged pair; the finish reason of generations.
GATES = """
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
                SELECT MAX(id) FROM reviews WHERE pair_id = p.id
                    AND decision IN ('accept', 'reject'))
            LEFT JOIN reviews e ON e.id = (
                SELECT MAX(id) FROM reviews WHERE pair_id = p.id AND decision = 'edit')
            LEFT JOIN pair_gates x ON x.id = (
                SELECT MIN(id) FROM pair_gates WHERE pair_id = p.id AND action = 'drop');
        """

# Migration 4: GQA and VQAv2 sources: source ids, scene graphs, facts.
SCENES_AND_FACTS = """
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
        """

# A judged run generation's first judgement makes its unit done (migrations 5 and 12).
_UNIT_DONE_ON_JUDGEMENT = """            INSERT INTO unit_tally
                SELECT g.model, 1 FROM generations g
                WHERE g.id = NEW.generation_id AND g.purpose = 'run' AND NOT EXISTS (
                    SELECT 1 FROM judgements o
                    WHERE o.generation_id = NEW.generation_id AND o.id <> NEW.id)
            ON CONFLICT (model) DO UPDATE SET done = done + 1;"""

# The call tally's statements in its triggers (migrations 5 and 10): count a row's call
# under its new values, or take it away from its old ones.
_CALL_TALLY_UPSERT = """
            INSERT INTO call_tally VALUES (
                COALESCE(NEW.run_id, 0), NEW.model, COALESCE(NEW.endpoint, ''), NEW.status,
                COALESCE(NEW.error_kind, '') = 'backpressure', 1,
                COALESCE(NEW.tokens_in, 0), COALESCE(NEW.tokens_out, 0))
            ON CONFLICT (run_id, model, endpoint, status, backpressure) DO UPDATE SET
                n = n + 1, tokens_in = tokens_in + excluded.tokens_in,
                tokens_out = tokens_out + excluded.tokens_out;"""
_CALL_TALLY_DECREMENT = """
            UPDATE call_tally SET n = n - 1,
                tokens_in = tokens_in - COALESCE(OLD.tokens_in, 0),
                tokens_out = tokens_out - COALESCE(OLD.tokens_out, 0)
            WHERE run_id = COALESCE(OLD.run_id, 0) AND model = OLD.model
              AND endpoint = COALESCE(OLD.endpoint, '') AND status = OLD.status
              AND backpressure = (COALESCE(OLD.error_kind, '') = 'backpressure');"""

# Migration 5: running tallies the monitor reads instead of scanning the ledger and the judgements.
MONITOR_TALLIES = f"""
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
        CREATE TRIGGER call_tally_insert AFTER INSERT ON llm_calls BEGIN{_CALL_TALLY_UPSERT}
        END;
        CREATE TRIGGER call_tally_update AFTER UPDATE ON llm_calls
        BEGIN{_CALL_TALLY_DECREMENT}{_CALL_TALLY_UPSERT}
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
{_UNIT_DONE_ON_JUDGEMENT}
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
        """

# Migration 6: bedrock batch jobs and their records.
BATCH_JOBS = """
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
        """

# Migration 8: blind review decisions.
BLIND_REVIEWS = """
        -- 1: an accept/reject made in blind review (score and gate verdicts hidden), which counts
        -- like any decision, and only blind ones measure the judge against a human.
        ALTER TABLE reviews ADD COLUMN blind INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX reviews_blind ON reviews(blind, pair_id);
        """

# Migration 10: the call tally counts finished calls only. Calls in flight are few and found
# by the status index; not counting them spares the writer two of every call's three tally
# writes (the row is inserted in flight, then updated once when it ends).
def _finished_call_triggers(upsert: str, decrement: str) -> str:
    """The call tally's three triggers (migrations 10 and 18): a call counts once it ends,
    and an update moves it from its old values to its new ones."""
    return f"""        CREATE TRIGGER call_tally_insert AFTER INSERT ON llm_calls
        WHEN NEW.status <> 'in_flight' BEGIN{upsert}
        END;
        CREATE TRIGGER call_tally_leave AFTER UPDATE ON llm_calls
        WHEN OLD.status <> 'in_flight' BEGIN{decrement}
        END;
        CREATE TRIGGER call_tally_enter AFTER UPDATE ON llm_calls
        WHEN NEW.status <> 'in_flight' BEGIN{upsert}
        END;
"""


FINISHED_CALL_TALLY = f"""
        DROP TRIGGER call_tally_insert;
        DROP TRIGGER call_tally_update;
        DELETE FROM call_tally WHERE status = 'in_flight';
{_finished_call_triggers(_CALL_TALLY_UPSERT, _CALL_TALLY_DECREMENT)}        """

# Migration 12: scores are counted by the verdict rules (store/verdicts.py) over the current
# pairs, never from a tally of every judgement ever made (which counted re-judged, panel-member
# and gated pairs' scores); the score tally goes, so the writer keeps it no more.
NO_SCORE_TALLY = f"""
        DROP TRIGGER judgement_tally;
        DROP TABLE score_tally;
        CREATE TRIGGER judgement_tally AFTER INSERT ON judgements BEGIN
{_UNIT_DONE_ON_JUDGEMENT}
        END;
        """

# Migration 18's call tally statements: as migration 10's, with the pictures carried.
_PICTURES_UPSERT = """
            INSERT INTO call_tally (run_id, model, endpoint, status, backpressure, n,
                                    tokens_in, tokens_out, pictures) VALUES (
                COALESCE(NEW.run_id, 0), NEW.model, COALESCE(NEW.endpoint, ''), NEW.status,
                COALESCE(NEW.error_kind, '') = 'backpressure', 1,
                COALESCE(NEW.tokens_in, 0), COALESCE(NEW.tokens_out, 0), NEW.pictures)
            ON CONFLICT (run_id, model, endpoint, status, backpressure) DO UPDATE SET
                n = n + 1, tokens_in = tokens_in + excluded.tokens_in,
                tokens_out = tokens_out + excluded.tokens_out,
                pictures = pictures + excluded.pictures;"""
_PICTURES_DECREMENT = """
            UPDATE call_tally SET n = n - 1,
                tokens_in = tokens_in - COALESCE(OLD.tokens_in, 0),
                tokens_out = tokens_out - COALESCE(OLD.tokens_out, 0),
                pictures = pictures - OLD.pictures
            WHERE run_id = COALESCE(OLD.run_id, 0) AND model = OLD.model
              AND endpoint = COALESCE(OLD.endpoint, '') AND status = OLD.status
              AND backpressure = (COALESCE(OLD.error_kind, '') = 'backpressure');"""

_PICTURES_TRIGGERS = _finished_call_triggers(_PICTURES_UPSERT, _PICTURES_DECREMENT)

# Migration 18: the call tally sums the pictures its calls carried (the monitor reads a
# followed run's pictures sent from a few rows, not the ledger), and a run row keeps the
# units done when it started (a followed run's rate counts from the run's own start).
PICTURES_AND_RUN_START = f"""
        ALTER TABLE call_tally ADD COLUMN pictures INTEGER NOT NULL DEFAULT 0;
        INSERT INTO call_tally (run_id, model, endpoint, status, backpressure, pictures)
            SELECT COALESCE(run_id, 0), model, COALESCE(endpoint, ''), status,
                   COALESCE(error_kind, '') = 'backpressure', SUM(pictures)
            FROM llm_calls WHERE pictures > 0 AND status <> 'in_flight'
            GROUP BY 1, 2, 3, 4, 5
        ON CONFLICT (run_id, model, endpoint, status, backpressure) DO UPDATE SET
            pictures = excluded.pictures;
        DROP TRIGGER call_tally_insert;
        DROP TRIGGER call_tally_leave;
        DROP TRIGGER call_tally_enter;
{_PICTURES_TRIGGERS}        ALTER TABLE runs ADD COLUMN start_done INTEGER;
        """
