"""`visinstruct batch stop`, and what a stopped run says about the batch jobs it leaves running."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from visinstruct.core.errors import BackendError, ExitCode, InputError
from visinstruct.core.pipeline.tally import counted
from visinstruct.core.store.batch_jobs import BatchJob, open_jobs, set_status
from visinstruct.core.store.database import Store


def left_running(store: Store, db: Path) -> str:
    """A note on jobs still open after a stop: they keep running (and billing) on AWS."""
    jobs = open_jobs(store)
    if not jobs:
        return ""
    records = sum(job.records for job in jobs)
    verb = "is" if len(jobs) == 1 else "are"
    return (f"{counted(len(jobs), 'Bedrock batch job')} with {counted(records, 'record')} "
            f"{verb} still running on "
            f"AWS (they are paid for): run the same command again to resume and collect them, "
            f"or `visinstruct batch stop --db {db}` to stop them")


def stop_jobs(store: Store, jobs: list[BatchJob]) -> list[tuple[BatchJob, str]]:
    """StopModelInvocationJob for each job; (job, problem) for the ones that could not stop."""
    from visinstruct.core.models.backends.bedrock_batch import BatchClient

    clients: dict[str, BatchClient] = {}
    problems: list[tuple[BatchJob, str]] = []
    try:
        for job in jobs:
            client = clients.get(job.region) or clients.setdefault(job.region,
                                                                   BatchClient(job.region))
            try:
                client.stop_job(job.arn)
            except BackendError as error:
                problems.append((job, str(error)))
                continue
            set_status(store, job, "Stopping", "stopped with `visinstruct batch stop`")
    finally:
        for client in clients.values():
            client.close()
    return problems


def cmd_batch(args: argparse.Namespace) -> int:
    """`batch stop`: stop this store's open Bedrock batch jobs."""
    from visinstruct.core.cli.main import _store_path

    db = _store_path(args)
    if not Path(db).is_file():
        raise InputError(f"{db}: no such store; pass the run's --db")
    store = Store(db)
    try:
        jobs = open_jobs(store)
        if not jobs:
            print(f"{db}: no open Bedrock batch jobs", file=sys.stderr)
            return ExitCode.OK
        problems = stop_jobs(store, jobs)
    finally:
        store.close()
    for job, problem in problems:
        print(f"could not stop {job.arn}: {problem}", file=sys.stderr)
    for job in jobs:
        if all(job is not p[0] for p in problems):
            print(job.arn)
    print(f"stopping {len(jobs) - len(problems)} of {len(jobs)} job(s); their records go back "
          "to pending when the run is started again", file=sys.stderr)
    return ExitCode.FAILED if problems else ExitCode.OK
