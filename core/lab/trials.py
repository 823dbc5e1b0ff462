"""The prompt lab: try an edited prompt on a few images beside the saved version."""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace

from visinstruct.core.config import Config
from visinstruct.core.errors import ConfigError, InputError
from visinstruct.core.evaluation.aggregate import ComparedItem, relative_score
from visinstruct.core.events import Emit, Event
from visinstruct.core.lab.compare import compare_with_baseline
from visinstruct.core.lab.stats import VersionStats, version_stats
from visinstruct.core.models.backends.base import Backend
from visinstruct.core.models.calls import CallOutcome, StageContext, build_pools
from visinstruct.core.models.ledger import Ledger
from visinstruct.core.models.pictures import PictureError
from visinstruct.core.pipeline.backlog import Backlog
from visinstruct.core.pipeline.generate import GenerationResult, generate
from visinstruct.core.pipeline.judge import JudgeResult
from visinstruct.core.pipeline.panel import judge_pairs
from visinstruct.core.pipeline.seeing import Sight
from visinstruct.core.records import TASKS, Image
from visinstruct.core.store.database import Store
from visinstruct.core.store.queries import load_images
from visinstruct.core.store.verdicts import is_kept_score
from visinstruct.core.text.prompt_versions import active_template
from visinstruct.core.text.prompts import PromptTemplate, parse_prompt, prompt_name

LAB_TASKS: tuple[str, ...] = (*TASKS, "judge")
MAX_LAB_IMAGES = 20  # a trial is a quick look, not a run

__all__ = ["LabImageDone", "LabResult", "LabSample", "LabSummary", "VersionStats", "call_context",
           "parse_lab_template", "random_image_ids", "run_lab", "summarize", "version_stats"]


@dataclass(frozen=True)
class LabImageDone(Event):
    """One image of a lab trial is finished (both versions)."""

    image_id: int
    done: int
    total: int


@dataclass(frozen=True)
class LabSample:
    """What one prompt version made of one (image, task) in a trial."""

    image_id: int
    task: str
    version: str
    generation_id: int | None
    pairs: int
    scores: tuple[float | None, ...]
    kept: int
    parse_failure: bool
    problems: tuple[str, ...] = ()
    error: str = ""
    reused: bool = False               # the run's own earlier result, not a new call
    ours_score: float | None = None    # evaluator's scores when the trial was evaluated
    baseline_score: float | None = None
    note: str = ""

    @property
    def mean_score(self) -> float | None:
        readable = [s for s in self.scores if s is not None]
        return sum(readable) / len(readable) if readable else None


@dataclass(frozen=True)
class LabSummary:
    """One version's numbers over a trial's images."""

    version: str
    samples: int
    pairs: int
    mean_score: float | None
    keep_rate: float | None
    parse_failure_rate: float | None
    errors: int
    relative_score: float | None


@dataclass(frozen=True)
class LabResult:
    """A finished (or stopped) trial: the edited version's samples and the saved version's."""

    trial: int
    purpose: str
    name: str
    version: str
    saved_version: str
    trial_samples: tuple[LabSample, ...]
    saved_samples: tuple[LabSample, ...]
    cancelled: bool = False

    @property
    def trial_summary(self) -> LabSummary:
        return summarize(self.version, self.trial_samples)

    @property
    def saved_summary(self) -> LabSummary:
        return summarize(self.saved_version, self.saved_samples)


def summarize(version: str, samples: Sequence[LabSample]) -> LabSummary:
    """Mean score, keep rate, parse-failure rate and relative score of a version's samples."""
    answered = [s for s in samples if not s.error]
    scores = [x for s in answered for x in s.scores if x is not None]
    pairs = sum(s.pairs for s in answered)
    failures = sum(s.parse_failure for s in answered)
    compared = [ComparedItem((s.image_id, s.task, "conversation", 0), s.ours_score,
                             s.baseline_score, None) for s in answered
                if s.ours_score is not None and s.baseline_score is not None]
    return LabSummary(
        version, len(answered), pairs, sum(scores) / len(scores) if scores else None,
        sum(s.kept for s in answered) / pairs if pairs else None,
        failures / len(answered) if answered else None, len(samples) - len(answered),
        relative_score(compared))


def parse_lab_template(text: str, name: str) -> PromptTemplate:
    """Validate edited prompt text for prompt `name`; ConfigError names the problem.

    The name and task must stay `name`: runs look their prompt up by it.
    """
    if name not in LAB_TASKS:
        raise InputError(f"the prompt lab tries {', '.join(LAB_TASKS)} prompts, not {name!r}")
    template = parse_prompt(text, source=f"edited {name} prompt")
    for key, value in (("name", template.name), ("task", template.task)):
        if value != name:
            raise ConfigError(f"edited {name} prompt: {key} is {value!r}; it must stay {name!r}, "
                              "the name runs look the prompt up by")
    return template


def random_image_ids(store: Store, count: int = 3) -> list[int]:
    """`count` random images with captions, found by random id jumps rather than a full scan."""
    picked: list[int] = []
    low = store.scalar("SELECT MIN(id) FROM images")
    high = store.scalar("SELECT MAX(id) FROM images")
    if low is None:
        return picked
    for _ in range(count * 10):
        if len(picked) == count:
            break
        row = store.reader().execute(
            "SELECT i.id FROM images i WHERE i.id >= ? AND EXISTS "
            "(SELECT 1 FROM captions c WHERE c.image_id = i.id) ORDER BY i.id LIMIT 1",
            (random.randint(int(low), int(high)),)).fetchone()
        if row is not None and row[0] not in picked:
            picked.append(int(row[0]))
    return sorted(picked)


@contextmanager
def call_context(config: Config, store: Store, models: Iterable[str], emit: Emit,
                 cancel: threading.Event | None = None) -> Iterator[StageContext]:
    """A StageContext with pools for `models`, for work outside a run (its calls have no run id)."""
    cancel = cancel or threading.Event()
    backends: dict[str, Backend] = {}
    try:
        backends, pools = build_pools(config, models, cancel)
        ledger = Ledger(store, None, emit)  # no run: NULL run_id
        yield StageContext(store, ledger, pools, emit, cancel)
    finally:
        for backend in backends.values():
            backend.close()


def next_trial(store: Store) -> int:
    """A new trial number; generations of trial N have purpose "lab:N"."""
    def work(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE key = 'lab_trials'").fetchone()
        number = int(row[0]) + 1 if row else 1
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('lab_trials', ?)", (str(number),))
        return number

    trial: int = store.write_sync(work)
    return trial


def _check_inputs(store: Store, template: PromptTemplate,
                  image_ids: Sequence[int]) -> dict[int, Image]:
    if template.task not in LAB_TASKS or template.name != template.task:
        raise InputError(f"the prompt lab tries {', '.join(LAB_TASKS)} prompts, not "
                         f"{template.name!r} ({template.task})")
    if not image_ids:
        raise InputError("pick at least one image for the trial (ids, or the random button)")
    if len(image_ids) > MAX_LAB_IMAGES:
        raise InputError(f"a trial takes at most {MAX_LAB_IMAGES} images; pick fewer "
                         f"({len(image_ids)} given)")
    images = load_images(store, list(dict.fromkeys(image_ids)))
    missing = [str(i) for i in image_ids if i not in images]
    if missing:
        raise InputError(f"image ids not in {store.path}: {', '.join(missing)}; check the ids")
    return images


@dataclass
class _Trial:
    """One trial's settings while its workers go.

    With `sides`, `template` is the vision version tried with the picture and `saved` the
    text version tried without it, on the same images.
    """

    config: Config
    store: Store
    template: PromptTemplate
    saved: PromptTemplate
    purpose: str
    evaluate: bool
    sight: Sight
    run: Backlog   # the templates a run uses: each stage's by whether its model sees
    sides: bool = False

    def pictures(self, image: Image, models: Sequence[str],
                 prompt: PromptTemplate) -> dict[str, bytes | None]:
        """The picture each model is sent with `prompt`: none with the text side of a sides
        trial (a generation trial's judge sees alike on both sides).

        Raises PictureError when a model that sees cannot be sent its picture.
        """
        if self.sides and prompt is self.saved:
            return {}
        return {name: self.sight.picture(name, image) for name in models}


def run_lab(config: Config, store: Store, template: PromptTemplate, image_ids: Sequence[int], *,
            emit: Emit, cancel: threading.Event | None = None,
            evaluate: bool = False, picture_sides: bool = False) -> LabResult:
    """Generate and judge `image_ids` with the edited `template` and with the saved version.

    Trial generations carry purpose "lab:N", so they never become run data. A judge prompt
    is tried on fresh conversations made with the active generation prompts. With
    `evaluate`, both versions' kept pairs are compared with the baseline conversation.
    Models that see are sent the picture, as in a run. With `picture_sides`, the two sides
    are the task's vision version with the picture and its text version without, side by side.
    """
    images = _check_inputs(store, template, image_ids)
    cancel = cancel or threading.Event()
    sight = Sight(config)
    saved = active_template(store, template.name)
    if picture_sides:
        judging = template.task == "judge"
        if not (sight.any_judge if judging else sight.generation):
            stage = "judge" if judging else "generation"
            raise InputError(f"the {stage} model is not shown pictures, so there is nothing to "
                             f"compare: set its [models.NAME] vision = true and [source] "
                             "images_dir (or gqa_images_dir)")
        template = active_template(store, prompt_name(template.task, sees=True))
        saved = active_template(store, template.task)
    number = next_trial(store)
    trial = _Trial(config, store, template, saved, f"lab:{number}",
                   evaluate and template.task != "judge", sight, Backlog.load(config, store),
                   picture_sides)
    results: list[tuple[LabSample, LabSample]] = []
    lock = threading.Lock()
    done = [0]
    models = [config.generation.model, *config.judge.panel]
    if trial.evaluate:
        models.append(config.evaluation.model)

    def one_image(ctx: StageContext, image: Image) -> None:
        if cancel.is_set():
            return
        if template.task == "judge":
            pairs = _judge_trial(ctx, trial, image)
        else:
            pairs = _generation_trial(ctx, trial, image)
        with lock:
            results.extend(pairs)
            done[0] += 1
            count = done[0]
        emit(LabImageDone(image.image_id, count, len(images)))

    workers = max(1, min(len(images), 8))
    with (call_context(config, store, models, emit, cancel) as ctx,
          ThreadPoolExecutor(workers, thread_name_prefix="lab") as pool):
        for future in [pool.submit(one_image, ctx, image) for image in images.values()]:
            future.result()
    store.flush()  # every ledger row of the trial is committed when it returns
    order = {image_id: n for n, image_id in enumerate(images)}
    results.sort(key=lambda r: (order[r[0].image_id], _task_order(r[0].task)))
    return LabResult(number, trial.purpose, template.name, template.version,
                     trial.saved.version, tuple(r[0] for r in results),
                     tuple(r[1] for r in results), cancel.is_set())


def _task_order(task: str) -> int:
    return TASKS.index(task) if task in TASKS else len(TASKS)


def _generation_trial(ctx: StageContext, trial: _Trial,
                      image: Image) -> list[tuple[LabSample, LabSample]]:
    tried = _generate_and_judge(ctx, trial, image, trial.template)
    if trial.saved.version == trial.template.version:
        return [(tried, tried)]
    earlier = None if trial.evaluate or trial.sides else _run_sample(trial, image.image_id)
    if earlier is None:
        earlier = _generate_and_judge(ctx, trial, image, trial.saved)
    return [(tried, earlier)]


def _judge_trial(ctx: StageContext, trial: _Trial,
                 image: Image) -> list[tuple[LabSample, LabSample]]:
    results = []
    for task in trial.config.generation.tasks:
        if ctx.cancel.is_set():
            break
        generated = _generate(ctx, trial, image, trial.run.templates[task])
        if isinstance(generated, LabSample):
            results.append((generated, generated))
            continue
        tried = _judge(ctx, trial, image, task, generated, trial.template)
        earlier = tried if trial.saved.version == trial.template.version else _judge(
            ctx, trial, image, task, generated, trial.saved)
        results.append((tried, earlier))
    return results


def _generate(ctx: StageContext, trial: _Trial, image: Image,
              template: PromptTemplate) -> GenerationResult | LabSample:
    """A trial generation, or the finished LabSample when there is nothing to judge."""
    settings = trial.config.generation
    try:
        picture = trial.pictures(image, [settings.model], template).get(settings.model)
    except PictureError as error:
        return LabSample(image.image_id, template.task, template.version, None, 0, (), 0, False,
                         error=str(error))
    result = generate(ctx, template, image, template.task, settings, settings.model,
                      purpose=trial.purpose, gates=trial.config.gates, picture=picture)
    if not isinstance(result, GenerationResult):
        return LabSample(image.image_id, template.task, template.version, None, 0, (), 0, False,
                         error=str(result.error or "cancelled"))
    if result.parse_failure:
        return LabSample(image.image_id, template.task, template.version, result.generation_id,
                         0, (), 0, True, result.problems)
    return result


def _judge(ctx: StageContext, trial: _Trial, image: Image, task: str,
           generated: GenerationResult, judge_template: PromptTemplate,
           member_templates: Mapping[str, PromptTemplate] | None = None) -> LabSample:
    """Judge a trial generation; the sample is labelled with the judge prompt's version.

    As in a run, pairs a quality gate dropped are not judged (their score stays None), and
    `member_templates` gives a panel member its own template.
    """
    settings = trial.config.judge
    version = judge_template.version
    targets = generated.passing()
    judged: JudgeResult | CallOutcome = JudgeResult((), 0)
    try:
        pictures = trial.pictures(image, settings.panel, judge_template)
    except PictureError as error:
        return LabSample(image.image_id, task, version, generated.generation_id,
                         len(generated.pairs), (), 0, False, generated.problems, error=str(error))
    if targets:
        judged = judge_pairs(ctx, judge_template, image, task, generated.ref, targets, settings,
                             member_templates=member_templates, pictures=pictures)
    if not isinstance(judged, JudgeResult):
        return LabSample(image.image_id, task, version, generated.generation_id,
                         len(generated.pairs), (), 0, False, generated.problems,
                         error=str(judged.error or "cancelled"))
    if judged.written is not None:
        judged.written.result()  # the trial's numbers are in the store when run_lab returns
    scores: list[float | None] = [None] * len(generated.pairs)
    for (idx, _), judgement in zip(targets, judged.judgements, strict=False):
        scores[idx] = judgement.score
    return LabSample(image.image_id, task, version, generated.generation_id, len(generated.pairs),
                     tuple(scores), judged.kept, False, generated.problems)


def _generate_and_judge(ctx: StageContext, trial: _Trial, image: Image,
                        template: PromptTemplate) -> LabSample:
    generated = _generate(ctx, trial, image, template)
    if isinstance(generated, LabSample):
        return generated
    # A generation trial is about the generation prompt: label the sample with its version,
    # judged as a run judges (each panel member with its own template).
    judged = _judge(ctx, trial, image, template.task, generated, trial.run.judge_template,
                    trial.run.member_templates)
    sample = replace(judged, version=template.version)
    if not trial.evaluate or sample.error or ctx.cancel.is_set():
        return sample
    threshold = trial.config.judge.threshold
    kept = [pair for pair, score in zip(generated.pairs, sample.scores, strict=False)
            if is_kept_score(score, threshold)]
    compared = compare_with_baseline(ctx, trial.config, active_template(trial.store, "evaluate"),
                                     image, template.task, generated.generation_id, kept)
    return replace(sample, ours_score=compared.ours, baseline_score=compared.baseline,
                   note=compared.note)


def _run_sample(trial: _Trial, image_id: int) -> LabSample | None:
    """The run's own judged result for (image, task) with the saved version, when there is one."""
    store, config, task, version = (trial.store, trial.config, trial.template.task,
                                    trial.saved.version)
    row = store.reader().execute(
        "SELECT id, status FROM generations WHERE image_id = ? AND task = ? "
        "AND prompt_version = ? AND model = ? AND purpose = 'run' ORDER BY id DESC LIMIT 1",
        (image_id, task, version, config.generation.model)).fetchone()
    if row is None:
        return None
    generation_id, status = int(row[0]), row[1]
    if status != "ok":
        return LabSample(image_id, task, version, generation_id, 0, (), 0, True, reused=True)
    if not store.scalar("SELECT 1 FROM judgements WHERE generation_id = ? LIMIT 1",
                        (generation_id,)):
        return None  # never judged: the trial makes its own
    scores = [r[0] for r in store.query(
        "SELECT (SELECT score FROM judgements j WHERE j.pair_id = p.id ORDER BY j.id DESC LIMIT 1) "
        "FROM pairs p WHERE p.generation_id = ? ORDER BY p.idx", (generation_id,))]
    threshold = config.judge.threshold
    return LabSample(image_id, task, version, generation_id, len(scores), tuple(scores),
                     sum(is_kept_score(s, threshold) for s in scores), False, reused=True)
