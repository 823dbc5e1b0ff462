"""Which of a run's models are shown the picture, and the pictures they share.

A stage sees when its model's `[models.X] vision` flag (or default) says so and the source
has a pictures folder (`[source] images_dir`, `gqa_images_dir`). Every picture an (image,
task) needs is prepared before its first call: an unusable file fails that image's units,
named once in the run's output (a PictureUnusable event) and in the store for `status`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from visinstruct.core.config import Config, sees_images
from visinstruct.core.events import Emit, PictureUnusable
from visinstruct.core.models.pictures import (
    PictureCache,
    PictureError,
    fitted_size,
    has_picture_folder,
    picture_tokens,
)
from visinstruct.core.pipeline.tally import money
from visinstruct.core.records import Image
from visinstruct.core.store.database import Store
from visinstruct.core.store.pictures import record_problem


def stage_sees(config: Config, model: str) -> bool:
    """Whether `model` is sent pictures in this config's runs."""
    return has_picture_folder(config.source) and sees_images(config.model(model))


@dataclass(frozen=True)
class PicturePlan:
    """The pictures a run would send and their estimated input tokens and cost."""

    pictures: int
    tokens: int
    cost_usd: float

    def describe(self) -> str:
        """One line for the run's plan; empty when no model sees."""
        if not self.pictures:
            return ""
        cost = f", about {money(self.cost_usd)}" if self.cost_usd else ""
        return (f"Pictures: about {self.pictures:,} sent, {self.tokens:,} image input tokens "
                f"(estimated per model family{cost}).")


def picture_plan(config: Config, store: Store, generations: int, judgings: int) -> PicturePlan:
    """Estimate the pictures `generations` generation calls and `judgings` judged units send:
    each seeing model's pictures at its `image_max_side`, from the store's mean image size."""
    row = store.reader().execute("SELECT AVG(width), AVG(height) FROM images").fetchone()
    width, height = int(row[0] or 640), int(row[1] or 480)
    calls = {config.generation.model: generations}
    for name in config.judge.panel:
        calls[name] = calls.get(name, 0) + judgings
    pictures = tokens = 0
    cost = 0.0
    for name, count in calls.items():
        if not count or not stage_sees(config, name):
            continue
        model = config.model(name)
        each = picture_tokens(model.model_id or model.model or name,
                              *fitted_size(width, height, model.image_max_side))
        pictures += count
        tokens += count * each
        cost += count * each * model.price_in_per_million / 1e6
    return PicturePlan(pictures, tokens, cost)


class Sight:
    """The run's models that see, and one picture cache shared by all of them."""

    def __init__(self, config: Config, cache: PictureCache | None = None) -> None:
        self.config = config
        self.generation = stage_sees(config, config.generation.model)
        self.judges: Mapping[str, bool] = {name: stage_sees(config, name)
                                           for name in config.judge.panel}
        self.cache = cache or PictureCache(config.source)
        self._reported: set[int] = set()
        self._lock = threading.Lock()

    @property
    def any_judge(self) -> bool:
        """Whether any judge (of a panel: any member) is shown the picture."""
        return any(self.judges.values())

    @property
    def anyone(self) -> bool:
        """Whether any model of the run is shown pictures."""
        return self.generation or self.any_judge

    def picture(self, model: str, image: Image) -> bytes | None:
        """The picture `model` is sent for `image`, or None when `model` does not see.

        Raises PictureError when the model sees and the picture cannot be prepared.
        """
        if not stage_sees(self.config, model):
            return None
        side = self.config.model(model).image_max_side
        return self.cache.get(image, side).data

    def problem(self, image: Image, *, generating: bool, judging: bool) -> PictureError | None:
        """Prepare every picture the unit's stages will send; the failure, if one cannot be."""
        models = ([self.config.generation.model] if generating and self.generation else [])
        if judging:
            models += [name for name, sees in self.judges.items() if sees]
        # The largest first: the smaller sizes are then made from it, the file read once.
        for model in sorted(dict.fromkeys(models),
                            key=lambda name: -self.config.model(name).image_max_side):
            try:
                self.picture(model, image)
            except PictureError as error:
                return error
        return None

    def report(self, store: Store, emit: Emit, run_id: int | None, image: Image,
               error: PictureError) -> None:
        """Name the unusable picture once per image: in the store (for `status`) and as an
        event (for the run's output)."""
        with self._lock:
            if image.image_id in self._reported:
                return
            self._reported.add(image.image_id)
        path = str(error.path) if error.path is not None else image.file_name
        store.write_nowait(lambda conn: record_problem(conn, run_id, image.image_id, path,
                                                       error.problem),
                           on_commit=lambda _: emit(PictureUnusable(image.image_id, path,
                                                                    error.problem)))
