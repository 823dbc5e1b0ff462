"""Bedrock batch jobs in the store: a job's ARN and record keys, so a resume polls, not resends."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from visinstruct.core.events import BatchJobUpdated
from visinstruct.core.store.database import Store, now

# Statuses after which Bedrock does no more work on a job.
TERMINAL = frozenset({"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"})
# Job rows the run still has to poll or read: not ended, or ended but not yet read.
_UNREAD = "processed = 0"


@dataclass(frozen=True)
class BatchRecord:
    """One record of a job: its recordId, ledger key and the unit it belongs to."""

    record_id: str
    key: str
    image_id: int
    task: str
    prompt_version: str
    generation_id: int = 0
    request_hash: str = ""


@dataclass(frozen=True)
class BatchJob:
    """A stored job row."""

    id: int
    arn: str
    job_id: str
    stage: str
    model: str
    model_id: str
    region: str
    output_uri: str
    records: int
    status: str
    message: str
    submitted_at: float
    ended_at: float | None

    @property
    def ended(self) -> bool:
        """Bedrock is done with it (whether or not its output has been read)."""
        return self.status in TERMINAL


_JOB_COLUMNS = ("id, arn, job_id, stage, model, model_id, region, output_uri, records, status, "
                "COALESCE(message, ''), submitted_at, ended_at")


def _job(row: Sequence[object]) -> BatchJob:
    return BatchJob(*row)  # type: ignore[arg-type]


def save_job(store: Store, *, arn: str, run_id: int | None, stage: str, model: str,
             model_id: str, region: str, token: str, input_uri: str, output_uri: str,
             status: str, records: Sequence[BatchRecord], message: str = "") -> BatchJob:
    """Store a created job and its record keys in one transaction and wait for the commit.

    A job already stored under the same ARN (a repeated token returns the first job) is
    returned as it is.
    """
    def work(conn: sqlite3.Connection) -> int:
        found = conn.execute("SELECT id FROM batch_jobs WHERE arn = ?", (arn,)).fetchone()
        if found:
            return int(found[0])
        stamp = now()
        job_id = conn.execute(
            "INSERT INTO batch_jobs (arn, job_id, run_id, stage, model, model_id, region, token, "
            "input_uri, output_uri, records, status, message, submitted_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (arn, arn.rsplit("/", 1)[-1], run_id, stage, model, model_id, region, token,
             input_uri, output_uri, len(records), status, message[:2000], stamp,
             stamp)).lastrowid
        conn.executemany(
            "INSERT INTO batch_records (job, record_id, key, image_id, task, prompt_version, "
            "generation_id, request_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(job_id, r.record_id, r.key, r.image_id, r.task, r.prompt_version, r.generation_id,
              r.request_hash) for r in records])
        return int(job_id or 0)

    row_id: int = store.write_sync(work)
    found = job_by_id(store, row_id)
    assert found is not None
    return found


def job_by_id(store: Store, row_id: int) -> BatchJob | None:
    """The job row with this id."""
    rows = store.query(f"SELECT {_JOB_COLUMNS} FROM batch_jobs WHERE id = ?", (row_id,))
    return _job(rows[0]) if rows else None


def unread_jobs(store: Store, stage: str | None = None) -> list[BatchJob]:
    """Jobs still to poll or to read, oldest first."""
    where = _UNREAD + (" AND stage = ?" if stage else "")
    return [_job(r) for r in store.query(
        f"SELECT {_JOB_COLUMNS} FROM batch_jobs WHERE {where} ORDER BY id",
        (stage,) if stage else ())]


def open_jobs(store: Store) -> list[BatchJob]:
    """Jobs Bedrock is still working on (not ended), oldest first."""
    marks = ",".join("?" * len(TERMINAL))
    return [_job(r) for r in store.query(
        f"SELECT {_JOB_COLUMNS} FROM batch_jobs WHERE status NOT IN ({marks}) ORDER BY id",
        tuple(sorted(TERMINAL)))]


def job_records(store: Store, job: BatchJob) -> dict[str, BatchRecord]:
    """recordId -> record of one job."""
    return {r[0]: BatchRecord(*r) for r in store.query(
        "SELECT record_id, key, image_id, task, prompt_version, generation_id, request_hash "
        "FROM batch_records WHERE job = ?", (job.id,))}


def keys_in_unread_jobs(store: Store, stage: str) -> set[str]:
    """Ledger keys a job of `stage` holds that has not been read yet (never sent again)."""
    return {r[0] for r in store.query(
        "SELECT r.key FROM batch_records r JOIN batch_jobs j ON j.id = r.job "
        f"WHERE j.{_UNREAD} AND j.stage = ?", (stage,))}


def tries_by_key(store: Store, stage: str) -> dict[str, int]:
    """How many read jobs of `stage` held each key (the round of its next submission)."""
    return {r[0]: int(r[1]) for r in store.query(
        "SELECT r.key, COUNT(*) FROM batch_records r JOIN batch_jobs j ON j.id = r.job "
        "WHERE j.processed = 1 AND j.stage = ? GROUP BY r.key", (stage,))}


def failed_tries(store: Store, stage: str, *, run_id: int | None,
                 since: float = 0.0) -> dict[str, int]:
    """How many read jobs of `stage` held each key in this run (or, with no run id, in the
    jobs submitted since `since`): the key's attempts so far."""
    scope = "j.run_id = ?" if run_id is not None else "j.run_id IS NULL AND j.submitted_at >= ?"
    return {r[0]: int(r[1]) for r in store.query(
        "SELECT r.key, COUNT(*) FROM batch_records r JOIN batch_jobs j ON j.id = r.job "
        f"WHERE j.processed = 1 AND j.stage = ? AND {scope} GROUP BY r.key",
        (stage, run_id if run_id is not None else since))}


def set_status(store: Store, job: BatchJob, status: str, message: str = "",
               ended_at: float | None = None) -> None:
    """Record what Bedrock last said about a job."""
    store.write_sync(lambda c: c.execute(
        "UPDATE batch_jobs SET status = ?, message = ?, updated_at = ?, "
        "ended_at = COALESCE(?, ended_at) WHERE id = ?",
        (status, message[:2000], now(), ended_at, job.id)))


def mark_read(store: Store, job: BatchJob, *, ok: int, errors: int, tokens_in: int,
              tokens_out: int) -> None:
    """Every returned record of the job is in the ledger; what did not return is pending again."""
    store.flush()
    store.write_sync(lambda c: c.execute(
        "UPDATE batch_jobs SET processed = 1, ok_records = ?, error_records = ?, tokens_in = ?, "
        "tokens_out = ?, updated_at = ? WHERE id = ?",
        (ok, errors, tokens_in, tokens_out, now(), job.id)))


def finished_keys(store: Store, endpoint: str, keys: Iterable[str]) -> set[str]:
    """Keys already written to the ledger from this job's output (a re-read skips them)."""
    wanted = set(keys)
    return {r[0] for r in store.query(
        "SELECT key FROM llm_calls WHERE endpoint = ? AND status IN ('ok', 'error')",
        (endpoint,)) if r[0] in wanted}


def batch_jobs_report(store: Store) -> list[dict[str, object]]:
    """The jobs for `status --json`: arn, stage, model, records, status and what came back."""
    try:
        rows = store.query(
            "SELECT arn, stage, model, records, status, COALESCE(message, ''), submitted_at, "
            "ended_at, ok_records, error_records FROM batch_jobs ORDER BY id")
    except sqlite3.OperationalError:
        return []  # a store from before batch jobs existed
    return [{"arn": r[0], "stage": r[1], "model": r[2], "records": r[3], "status": r[4],
             "message": r[5], "submitted_at": r[6], "ended_at": r[7], "ok_records": r[8],
             "error_records": r[9]} for r in rows]


def batch_job_rows(store: Store, limit: int = 50) -> list[BatchJobUpdated]:
    """The latest jobs as the events that describe them (for the app's monitor)."""
    try:
        rows = store.query(
            "SELECT arn, job_id, stage, model, records, status, submitted_at, "
            "COALESCE(message, ''), ok_records, error_records FROM batch_jobs "
            "ORDER BY id DESC LIMIT ?", (limit,))
    except sqlite3.OperationalError:
        return []
    return [BatchJobUpdated(*row) for row in reversed(rows)]
