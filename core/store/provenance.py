"""Where the kept records came from: per pair its judges, decision and flags; per model its id
and licence as the runs recorded them. Read by `export` (jsonl, hf, the card) and `status`."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from visinstruct.core.config import known_spec
from visinstruct.core.records import Pair
from visinstruct.core.store.database import Store
from visinstruct.core.store.verdicts import kept_sql

PANEL_PREFIX = "panel:"  # a panel's combined judgements are stored under "panel:<how>:<a+b>"


@dataclass(frozen=True)
class ModelFacts:
    """A model as the runs recorded it: backend, what it runs (model id) and its licence."""

    name: str
    backend: str = ""
    model_id: str = ""
    license: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"model": self.name, "model_id": self.model_id, "license": self.license}


@dataclass(frozen=True)
class KeptConversation:
    """The kept pairs of one conversation, with what each pair's verdict rests on."""

    image_id: int
    task: str
    prompt_version: str
    model: str
    pairs: tuple[Pair, ...]
    pair_facts: tuple[dict[str, Any], ...]   # per pair: score, scores, decision, edited, flags

    @property
    def flags(self) -> list[str]:
        return sorted({rule for facts in self.pair_facts for rule in facts["flags"]})

    @property
    def judges(self) -> list[str]:
        return sorted({name for facts in self.pair_facts for name in facts["scores"]
                       if not name.startswith(PANEL_PREFIX)})


@dataclass
class FlagTally:
    """Kept pairs a gate flagged, by rule: written out, or left out by --exclude-flagged."""

    written: Counter[str] = field(default_factory=Counter)
    left_out: Counter[str] = field(default_factory=Counter)


def model_identifier(body: Mapping[str, Any]) -> str:
    """What a recorded [models.X] table runs: its model id, served model, GGUF or endpoints."""
    for key in ("model_id", "model", "gguf"):
        if body.get(key):
            return str(body[key])
    if body.get("endpoints"):
        return "endpoints " + ", ".join(str(e) for e in body["endpoints"])
    spec = known_spec(str(body.get("backend", "")))
    return spec.default_model if spec is not None else ""


def recorded_models(store: Store) -> dict[str, ModelFacts]:
    """Every model in the runs' recorded configs; a later run's record of a name wins."""
    models: dict[str, ModelFacts] = {}
    for (settings,) in store.query("SELECT config FROM runs ORDER BY id"):
        try:
            raw = json.loads(settings or "{}").get("config") or {}
            tables = raw.get("models") or {}
        except (ValueError, AttributeError):
            continue
        if not isinstance(tables, dict):
            continue
        for name, body in tables.items():
            if isinstance(body, dict):
                models[name] = ModelFacts(str(name), str(body.get("backend", "")),
                                          model_identifier(body), str(body.get("license", "")))
    return models


def models_used(store: Store) -> dict[str, list[str]]:
    """The model names that made the current data: {"generation": [...], "judge": [...]}."""
    generation = [row[0] for row in store.query(
        "SELECT DISTINCT model FROM current_generations ORDER BY model")]
    judges = [row[0] for row in store.query(
        "SELECT DISTINCT j.model FROM judgements j JOIN current_generations g "
        "ON g.id = j.generation_id ORDER BY j.model") if not row[0].startswith(PANEL_PREFIX)]
    return {"generation": generation, "judge": judges}


def prompt_versions_used(store: Store) -> dict[str, list[str]]:
    """The prompt versions of the current data: by task for generation, and the judge's."""
    versions: dict[str, list[str]] = {}
    for task, version in store.query(
            "SELECT DISTINCT task, prompt_version FROM current_generations ORDER BY task, "
            "prompt_version"):
        versions.setdefault(task, []).append(version)
    judge = [row[0] for row in store.query(
        "SELECT DISTINCT j.prompt_version FROM judgements j JOIN current_generations g "
        "ON g.id = j.generation_id ORDER BY 1")]
    if judge:
        versions["judge"] = judge
    return versions


def recorded_gates(store: Store) -> dict[str, Any]:
    """The quality gates' settings of the latest run that recorded them ({} when none did)."""
    for (settings,) in store.query("SELECT config FROM runs ORDER BY id DESC"):
        try:
            gates = json.loads(settings or "{}").get("gates")
        except (ValueError, AttributeError):
            continue
        if isinstance(gates, dict):
            return gates
    return {}


_FLAGS = ("(SELECT group_concat(x.rule, ',') FROM pair_gates x "
          "WHERE x.pair_id = pair_state.pair_id AND x.action = 'flag')")
# Each judge's latest score of the pair (a panel's members and its combined score).
_SCORES = ("(SELECT json_group_object(j.model, j.score) FROM judgements j WHERE j.id IN "
           "(SELECT MAX(id) FROM judgements WHERE pair_id = pair_state.pair_id GROUP BY model))")


def kept_with_provenance(store: Store, threshold: float, *, exclude_flagged: bool = False,
                         flags: FlagTally | None = None,
                         scores: bool = True) -> Iterator[KeptConversation]:
    """The kept conversations (rules: store/verdicts.py), each pair with its judges' scores,
    human decision and gate flags; `exclude_flagged` leaves out pairs a gate flagged.

    `scores=False` leaves each judge's own score out (empty `scores`): half the query's cost,
    for an export that writes no provenance.
    """
    rows = store.iter_query(
        f"SELECT image_id, task, prompt_version, model, question, answer, score, decision, "
        f"edited, {_FLAGS}, {_SCORES if scores else 'NULL'} FROM pair_state "
        f"WHERE {kept_sql('?')} "
        f"ORDER BY image_id, task, generation_id, idx", (threshold,), size=5000)
    tally = flags if flags is not None else FlagTally()
    current: tuple[int, str] | None = None
    meta: tuple[str, str] = ("", "")
    pairs: list[Pair] = []
    facts: list[dict[str, Any]] = []
    for row in rows:
        key = (int(row[0]), str(row[1]))
        if key != current:
            if current is not None and pairs:
                yield KeptConversation(*current, *meta, tuple(pairs), tuple(facts))
            current, meta, pairs, facts = key, (str(row[2]), str(row[3])), [], []
        rules = sorted(set(row[9].split(","))) if row[9] else []
        if rules and exclude_flagged:
            tally.left_out.update(rules)
            continue
        tally.written.update(rules)
        pairs.append(Pair(row[4], row[5]))
        facts.append({"score": row[6], "scores": json.loads(row[10]) if row[10] else {},
                      "decision": row[7], "edited": bool(row[8]), "flags": rules})
    if current is not None and pairs:
        yield KeptConversation(*current, *meta, tuple(pairs), tuple(facts))

