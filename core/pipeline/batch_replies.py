"""What a batch record's reply becomes: a generation or judgements, by the online path's handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from visinstruct.core.models.calls import CallOutcome
from visinstruct.core.pipeline.generate import handle_generation
from visinstruct.core.pipeline.judge import handle_judgement
from visinstruct.core.pipeline.panel import unjudged_pairs
from visinstruct.core.records import Image
from visinstruct.core.store.batch_jobs import BatchRecord

if TYPE_CHECKING:
    from visinstruct.core.pipeline.batch import BatchDriver


def handle_reply(driver: BatchDriver, stage: str, record: BatchRecord, image: Image,
                 outcome: CallOutcome) -> None:
    """Store one record's reply as the online path would: a generation, or judgements."""
    if stage == "generate":
        template = driver.template_for(record.task, record.prompt_version)
        result = handle_generation(driver.ctx, template, image, record.task,
                                   driver.stages[stage], outcome, gates=driver.config.gates,
                                   max_pairs=driver.config.generation.max_pairs)
        if isinstance(result, CallOutcome):  # a reply that could not be read or stored
            driver.unit_done(image.image_id, record.task, False)
        elif result.parse_failure:
            driver.unit_done(image.image_id, record.task, True)
        return
    template = driver.template_for("judge", record.prompt_version)
    # Gated pairs are never judged; pairs scored before (e.g. before [gates] changed) not again.
    targets = unjudged_pairs(driver.store, record.generation_id, driver.config.judge,
                             record.prompt_version)
    judged = handle_judgement(driver.ctx, template, image, record.task, record.generation_id,
                              tuple(p for _, p in targets), driver.config.judge,
                              driver.stages[stage], outcome,
                              positions=[idx for idx, _ in targets])
    ok = not isinstance(judged, CallOutcome)  # else a reply that could not be read or stored
    if not isinstance(judged, CallOutcome):
        driver.kept(judged.kept)
    if "generate" in driver.stages:  # else the workers counted the unit when it was generated
        driver.unit_done(image.image_id, record.task, ok)
