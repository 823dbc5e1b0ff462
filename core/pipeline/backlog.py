"""A run's backlog: its templates, its images page by page, and what each (image, task) still needs.

Read-only while a run lasts: the workers, the batch stages and the plan all read it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from visinstruct.core.config import Config
from visinstruct.core.pipeline.seeing import stage_sees
from visinstruct.core.pipeline.tally import counted
from visinstruct.core.records import FACT_TASKS, FACTS_MODEL, Image, UnitNeed
from visinstruct.core.store.database import Store
from visinstruct.core.store.queries import load_images
from visinstruct.core.text.prompt_versions import active_template, stored_template
from visinstruct.core.text.prompts import PromptTemplate, prompt_name

_PAGE = 500


@dataclass(frozen=True)
class Unit:
    """One (image, task) and what it still needs: generating (then judging) or only judging."""

    image: Image
    task: str
    need: UnitNeed
    generation_id: int = 0


class Owed(NamedTuple):
    """What one (image, task) still needs, before its image is loaded.

    A tuple, not a dataclass: a run makes one per unit, and this one costs a third as much.
    """

    image_id: int
    task: str
    need: UnitNeed
    generation_id: int = 0


@dataclass(frozen=True)
class Redone:
    """Units a run owes again because their stage's active prompt version changed since they
    were made (e.g. `vision` turned on: the vision versions replace the text ones)."""

    units: int
    stage: str      # "generated" | "judged"
    change: str     # "vision on" | "vision off" | "" (another version, e.g. the prompt lab's)

    def describe(self) -> str:
        """'72 units will be generated again because the prompt version changed (vision on).'"""
        why = f" ({self.change})" if self.change else ""
        prompt = "the judge's prompt version" if self.stage == "judged" else "the prompt version"
        return (f"{counted(self.units, 'unit')} will be {self.stage} again because {prompt} "
                f"changed{why}.")


def _change(active: str, text_name: str, vision_name: str, before: set[str]) -> str:
    """Why a stage's version changed, from the prompt names it used before and uses now."""
    if vision_name == text_name:
        return ""
    if active == vision_name and text_name in before:
        return "vision on"
    if active == text_name and vision_name in before:
        return "vision off"
    return ""


@dataclass(frozen=True)
class Backlog:
    """The work of a run as the store stands: templates, image pages, and units still owed."""

    config: Config
    store: Store
    templates: dict[str, PromptTemplate]   # by task: the active generation templates
    judge_template: PromptTemplate          # the judge's (a panel's: its combined scores')
    # A panel member's own template: the vision version for a member shown the picture.
    member_templates: dict[str, PromptTemplate] | None = None

    @classmethod
    def load(cls, config: Config, store: Store) -> Backlog:
        """The backlog with the store's active templates: the vision versions for models that
        are shown the picture."""
        seeing = stage_sees(config, config.generation.model)
        judges = {name: stage_sees(config, name) for name in config.judge.panel}
        judge = active_template(store, prompt_name("judge", sees=any(judges.values())))
        members = {name: judge if sees == any(judges.values())
                   else active_template(store, prompt_name("judge", sees=sees))
                   for name, sees in judges.items()}
        return cls(config, store,
                   {task: active_template(store, prompt_name(task, sees=seeing))
                    for task in config.generation.tasks},
                   judge, members)

    def template_for(self, name: str, version: str) -> PromptTemplate:
        """The template a record was made with (the active one, or an older stored version)."""
        active = self.judge_template if name == "judge" else self.templates[name]
        if active.version == version:
            return active
        return stored_template(self.store, version) or active

    def image_pages(self) -> Iterator[list[int]]:
        """Image ids in order, a page at a time, up to the source's limit."""
        limit = self.config.source.limit
        after, seen = -1, 0
        while True:
            size = _PAGE if not limit else min(_PAGE, limit - seen)
            if size <= 0:
                return
            ids = [r[0] for r in self.store.query(
                "SELECT id FROM images WHERE id > ? ORDER BY id LIMIT ?", (after, size))]
            if not ids:
                return
            yield ids
            seen += len(ids)
            after = ids[-1]

    @staticmethod
    def units_of(config: Config, images: int) -> int:
        """The units of a store holding `images` images: each task of each image, up to the
        source's limit."""
        limit = config.source.limit
        return (min(images, limit) if limit else images) * len(config.generation.tasks)

    def count(self) -> tuple[int, int]:
        """(units in all, units done)."""
        images = int(self.store.scalar("SELECT COUNT(*) FROM images") or 0)
        total = self.units_of(self.config, images)
        done = 0
        for ids in self.image_pages():
            done += sum(1 for _ in self.needs(ids, done=True))
        return total, done

    def owed(self) -> Iterator[Owed]:
        """Every unit still owed, in image order."""
        for ids in self.image_pages():
            yield from self.needs(ids)

    def needs(self, ids: list[int], *, done: bool = False) -> Iterator[Owed]:
        """What each unit of the images `ids` still needs (with `done`: the finished units)."""
        marks = ",".join("?" * len(ids))
        gen_model = self.config.generation.model
        tasks = self.config.generation.tasks
        state: dict[tuple[int, str], tuple[int, str]] = {}
        for task in tasks:
            version = self.templates[task].version
            for gid, image_id, status in self.store.query(
                    f"SELECT id, image_id, status FROM generations WHERE image_id IN ({marks}) "
                    f"AND task = ? AND prompt_version = ? AND model = ? AND purpose = 'run'",
                    (*ids, task, version, FACTS_MODEL if task in FACT_TASKS else gen_model)):
                state[(image_id, task)] = (gid, status)
        ok_ids = [gid for gid, status in state.values() if status == "ok"]
        # Judging is owed for a pair that passed the gates and has no score from this judge:
        # after [gates] changed, only the pairs that newly pass.
        owed: set[int] = set()
        if ok_ids:
            gmarks = ",".join("?" * len(ok_ids))
            owed = {r[0] for r in self.store.query(
                f"SELECT DISTINCT p.generation_id FROM pairs p WHERE p.generation_id IN ({gmarks}) "
                "AND NOT EXISTS (SELECT 1 FROM pair_gates x WHERE x.pair_id = p.id "
                "AND x.action = 'drop') AND NOT EXISTS (SELECT 1 FROM judgements j "
                "WHERE j.pair_id = p.id AND j.prompt_version = ? AND j.model = ?)",
                (*ok_ids, self.judge_template.version, self.config.judge.identity))}
        for image_id in ids:
            for task in tasks:
                gid, status = state.get((image_id, task), (0, ""))
                if not gid:
                    need = UnitNeed.GENERATE
                elif status == "ok" and gid in owed and task not in FACT_TASKS:
                    need = UnitNeed.JUDGE
                else:
                    need = UnitNeed.DONE
                if (need is UnitNeed.DONE) == done:
                    yield Owed(image_id, task, need, gid)

    def _last_image(self) -> int | None:
        """The last image id within the source's limit; None when every image is in."""
        limit = self.config.source.limit
        if not limit:
            return None
        row = self.store.reader().execute("SELECT id FROM images ORDER BY id LIMIT 1 OFFSET ?",
                                          (limit - 1,)).fetchone()
        return int(row[0]) if row is not None else None

    def _other_versions(self, prompt: str, active: str) -> bool:
        """Whether this store holds a version of `prompt` (text or vision) other than `active`."""
        return self.store.scalar(
            "SELECT 1 FROM prompts WHERE name IN (?, ?) AND version <> ? LIMIT 1",
            (prompt_name(prompt, sees=False), prompt_name(prompt, sees=True), active)) is not None

    def _count_older(self, params: dict[str, object], within: str, names: set[str]) -> int:
        """Units of one task whose generation was made under another version only."""
        older = ("FROM generations g LEFT JOIN prompts p ON p.version = g.prompt_version "
                 "WHERE g.task = :task AND g.model = :model AND g.purpose = 'run' "
                 f"AND g.prompt_version <> :version{within} AND NOT EXISTS ("
                 "SELECT 1 FROM generations a WHERE a.image_id = g.image_id "
                 "AND a.task = g.task AND a.model = g.model AND a.purpose = 'run' "
                 "AND a.prompt_version = :version)")
        names.update(str(r[0]) for r in self.store.query(
            f"SELECT DISTINCT p.name {older}", params) if r[0])
        return int(self.store.scalar(f"SELECT COUNT(DISTINCT g.image_id) {older}", params) or 0)

    def _count_rescored(self, params: dict[str, object], within: str, names: set[str]) -> int:
        """Units of one task this judge scored under another version only."""
        scored = ("FROM generations g JOIN judgements j ON j.generation_id = g.id "
                  "LEFT JOIN prompts p ON p.version = j.prompt_version "
                  "WHERE g.task = :task AND g.model = :model AND g.purpose = 'run' "
                  f"AND g.status = 'ok' AND g.prompt_version = :version{within} "
                  "AND j.model = :judge AND j.prompt_version <> :jversion AND NOT EXISTS ("
                  "SELECT 1 FROM judgements k WHERE k.generation_id = g.id "
                  "AND k.model = :judge AND k.prompt_version = :jversion)")
        names.update(str(r[0]) for r in self.store.query(
            f"SELECT DISTINCT p.name {scored}", params) if r[0])
        return int(self.store.scalar(f"SELECT COUNT(DISTINCT g.id) {scored}", params) or 0)

    def redone(self) -> tuple[Redone, ...]:
        """Units owed again because a stage's active prompt version is not the one they were
        made with: generated again (their generation under another version) or judged again
        (their pairs scored by this judge under another version). Empty when none.

        A stage whose prompt has never had another version in this store (the usual case) is
        not looked for: only a store where one changed pays the count (about 1.5 s at 450,000
        units).
        """
        last = self._last_image()
        within = " AND g.image_id <= :last" if last is not None else ""
        gen_model, judge = self.config.generation.model, self.config.judge.identity
        generate = judging = 0
        before: dict[str, set[str]] = {"generated": set(), "judged": set()}
        judge_changed = self._other_versions("judge", self.judge_template.version)
        for task in self.config.generation.tasks:
            if task in FACT_TASKS:
                continue  # made from the facts: no prompt, no model call
            params = {"task": task, "model": gen_model, "version": self.templates[task].version,
                      "last": last, "judge": judge, "jversion": self.judge_template.version}
            if self._other_versions(task, self.templates[task].version):
                generate += self._count_older(params, within, before["generated"])
            if judge_changed:
                judging += self._count_rescored(params, within, before["judged"])
        found = []
        if generate:
            task = next(t for t in self.config.generation.tasks if t not in FACT_TASKS)
            found.append(Redone(generate, "generated", _change(
                self.templates[task].name, prompt_name(task, sees=False),
                prompt_name(task, sees=True), before["generated"])))
        if judging:
            found.append(Redone(judging, "judged", _change(
                self.judge_template.name, prompt_name("judge", sees=False),
                prompt_name("judge", sees=True), before["judged"])))
        return tuple(found)

    def units(self, *, leave: Collection[str] = ()) -> Iterator[Unit]:
        """The units still owed with their images, but for the needs in `leave`."""
        for ids in self.image_pages():
            pending = [o for o in self.needs(ids) if o.need not in leave]
            if not pending:
                continue
            images = load_images(self.store, sorted({o.image_id for o in pending}))
            for owed in pending:
                yield Unit(images[owed.image_id], owed.task, owed.need, owed.generation_id)
