"""Evaluation through Bedrock batch jobs: every missing comparison as a record, verdicts as usual.

Only conversation mode goes by batch; answers mode needs each answer before its comparison
and stays on demand. Whatever is fewer than `min_records` goes back to the online path. The
job lifecycle is `core/models/batch_calls.py`, the same as the run's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from visinstruct.core.config import ModelConfig
from visinstruct.core.errors import BackendError
from visinstruct.core.evaluation.units import TASK_REQUESTS, transcript
from visinstruct.core.models.backends.bedrock_bodies import request_body
from visinstruct.core.models.batch_calls import BatchCalls, Outgoing
from visinstruct.core.models.calls import CallOutcome, fail_answered
from visinstruct.core.models.ledger import call_key, request_hash
from visinstruct.core.store.batch_jobs import BatchJob, BatchRecord

if TYPE_CHECKING:
    from visinstruct.core.evaluation.evaluate import Comparison, Evaluation

STAGE = "evaluate"


def evaluate_by_batch(state: Evaluation, comparisons: list[Comparison], model: ModelConfig,
                      notice: Callable[[str], None]) -> list[Comparison]:
    """Send `comparisons` as batch jobs; returns those left for on-demand calls."""
    if state.mode != "conversation":
        notice("answers mode asks each answer before comparing it: it runs on demand")
        return comparisons
    stage = ComparisonRecords(state, comparisons, model, notice)
    calls = BatchCalls(state.ctx, state.config.models, run_id=None, folder="evaluation",
                       note=notice)
    try:
        calls.drive([stage])
    finally:
        calls.close()
    return stage.left


class ComparisonRecords:
    """The evaluation's batch stage: a record per missing comparison, a verdict per reply."""

    name = STAGE
    after = ""

    def __init__(self, state: Evaluation, comparisons: list[Comparison], model: ModelConfig,
                 notice: Callable[[str], None]) -> None:
        self.state = state
        self.model = model
        self.notice = notice
        self.by_key = {self.key(c): c for c in comparisons}
        self.left: list[Comparison] = []   # too few for a job: compared on demand after

    def key(self, comparison: Comparison) -> str:
        """The ledger key of a comparison's call (conversation mode: one order per comparison)."""
        state, unit = self.state, comparison.unit
        return call_key(STAGE, unit.image.image_id, unit.task, state.template.version,
                        state.model, f"{state.mode}:{comparison.item}:{comparison.orders[0]}")

    def records(self, *, bodies: bool) -> Iterator[Outgoing]:
        """The comparisons with no answered call yet."""
        state = self.state
        done = {r[0] for r in state.store.query(
            "SELECT DISTINCT key FROM llm_calls WHERE stage = ? AND status = 'ok'", (STAGE,))}
        for key, comparison in self.by_key.items():
            if key in done:
                continue
            unit = comparison.unit
            record = BatchRecord(key, key, unit.image.image_id, unit.task,
                                 state.template.version, unit.generation_id)
            if not bodies:
                yield Outgoing(record, {})
                continue
            request = state.comparison_request(unit, comparison.orders[0],
                                               TASK_REQUESTS[unit.task], transcript(unit.ours),
                                               transcript(unit.baseline))
            yield Outgoing(BatchRecord(key, key, unit.image.image_id, unit.task,
                                       state.template.version, unit.generation_id,
                                       request_hash(request)),
                           request_body(self.model.model_id, request))

    def submitted(self, job: BatchJob) -> None:
        """Say so: evaluation shows notices, not job rows."""
        self.notice(f"submitted evaluation batch job {job.arn} with {job.records} comparisons")

    def replies(self, answered: Sequence[tuple[BatchRecord, CallOutcome]]) -> None:
        """Each reply's verdict, stored as an online comparison's would be."""
        units = {(c.unit.image.image_id, c.unit.task): c.unit for c in self.by_key.values()}
        for record, outcome in answered:
            unit = units.get((record.image_id, record.task))
            if unit is None:  # a job left by an earlier evaluation of another sample
                fail_answered(self.state.ctx, outcome, BackendError("no unit for the record"))
                continue
            _mode, item, order = record.key.rsplit("|", 1)[1].split(":")
            self.state.record_verdict(unit, int(item), order, record.generation_id, outcome)

    def failed(self, record: BatchRecord, *, final: bool) -> None:
        """A comparison out of attempts is a failed call (the next evaluation sends it again)."""
        if final and record.key in self.by_key:
            self.state.count_failure(f"batch record {record.key} ended without a reply")

    def remainder(self, records: list[Outgoing]) -> None:
        """Compared on demand once the jobs are read, unless the config says to wait."""
        if self.model.on_demand_remainder:
            self.left.extend(self.by_key[r.record.key] for r in records)
            return
        self.notice(f"{len(records)} comparisons wait: fewer than min_records "
                    f"({self.model.min_records}) and on_demand_remainder is false")
