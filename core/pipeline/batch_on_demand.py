"""The records of a batch stage that go out without a job: too few for one, or nothing to send."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from visinstruct.core.config import ModelConfig
from visinstruct.core.models.calls import CallOutcome
from visinstruct.core.pipeline.batch_records import PendingRecord
from visinstruct.core.pipeline.generate import GenerationResult, generate
from visinstruct.core.pipeline.judge import JudgeResult, judge
from visinstruct.core.pipeline.panel import unjudged_pairs
from visinstruct.core.pipeline.short_answer import write_short_answers
from visinstruct.core.records import FACT_TASKS

if TYPE_CHECKING:
    from visinstruct.core.pipeline.batch import BatchDriver


def write_without_call(driver: BatchDriver, record: PendingRecord) -> None:
    """An image with nothing to describe: generate() writes its counted row, no call.

    Short answers are made from the image's facts here too.
    """
    task = record.record.task
    if task in FACT_TASKS:
        write_short_answers(driver.ctx, driver.runner.templates[task], record.image, task)
        driver.unit_done(record.image.image_id, task, True)
        return
    result = generate(driver.ctx, driver.runner.templates[task], record.image, task,
                      driver.config.generation, driver.stages["generate"])
    if isinstance(result, GenerationResult):
        driver.unit_done(record.image.image_id, task, True)


def send_on_demand(driver: BatchDriver, stage: str, model: ModelConfig,
                   chunk: list[PendingRecord]) -> None:
    """Fewer records than a job may hold: the same model on demand, through its pool."""
    def one(record: PendingRecord) -> None:
        if driver.cancel.is_set():
            return
        try:
            _online(driver, stage, model, record)
        except Exception as exc:  # noqa: BLE001 - one bad unit must not stop the rest
            driver.note(f"{type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(max_workers=max(1, min(len(chunk), model.max_in_flight)),
                            thread_name_prefix="on-demand") as pool:
        list(pool.map(one, chunk))


def _online(driver: BatchDriver, stage: str, model: ModelConfig,
            record: PendingRecord) -> None:
    runner = driver.runner
    task = record.record.task
    image = record.image
    if stage == "generate":
        generated = generate(driver.ctx, runner.templates[task], image, task,
                             driver.config.generation, model.name, gates=driver.config.gates)
        if isinstance(generated, CallOutcome):
            if not generated.cancelled:
                driver.unit_done(image.image_id, task, False)
        elif generated.parse_failure:
            driver.unit_done(image.image_id, task, True)
        return
    assert runner.judge_template is not None
    generation_id = record.record.generation_id
    targets = unjudged_pairs(driver.store, generation_id, driver.config.judge,
                             runner.judge_template.version)  # gated pairs are never judged
    judged = judge(driver.ctx, runner.judge_template, image, task, generation_id,
                   [p for _, p in targets], driver.config.judge, model.name,
                   indices=[idx for idx, _ in targets])
    if isinstance(judged, JudgeResult):
        driver.kept(judged.kept)
    # With online generation the workers counted the unit when they generated it.
    if "generate" in driver.stages and not (isinstance(judged, CallOutcome) and judged.cancelled):
        driver.unit_done(image.image_id, task, isinstance(judged, JudgeResult))
