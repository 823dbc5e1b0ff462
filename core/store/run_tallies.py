"""Counts of one run that a poll keeps cheap: units done, calls per endpoint, pictures sent.

On a store of schema 5 or later the first count reads the tallies its triggers keep;
later counts read only rows written since. Migration 18 (`schema_sql`) adds the pictures
each tallied call carried, and the units a run found done when it started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from visinstruct.core.records import FACTS_MODEL

if TYPE_CHECKING:  # the schema imports this module, and the store imports the schema
    from visinstruct.core.store.database import Store


# Generation `g` has pairs and a gate dropped every one (nothing is left for the judge).
_ALL_GATED = (
    "EXISTS (SELECT 1 FROM pairs p WHERE p.generation_id = g.id) AND NOT EXISTS ("
    "SELECT 1 FROM pairs p WHERE p.generation_id = g.id AND NOT EXISTS ("
    "SELECT 1 FROM pair_gates x WHERE x.pair_id = p.id AND x.action = 'drop'))")


class UnitTally:
    """Units done in the store, counting only rows added since last time.

    A unit is a run generation that is judged, unparseable or skipped, made from facts (never
    judged), or has every pair dropped by a gate; a regenerated unit (after a prompt change)
    counts again, so the figure is capped at the run's total.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.done = 0
        self._judgements_read = 0
        self._kept_total = 0
        self._generations_read = 0

    def count(self, store: Store) -> int:
        last_judgement = int(store.scalar("SELECT COALESCE(MAX(id), 0) FROM judgements") or 0)
        last_generation = int(store.scalar("SELECT COALESCE(MAX(id), 0) FROM generations") or 0)
        model = self.model
        if not self._judgements_read and not self._generations_read and has_tallies(store):
            # The first count from the tally the store's triggers keep: no scan of the store.
            self.done = int(store.scalar(
                "SELECT COALESCE(SUM(done), 0) FROM unit_tally "
                "WHERE :model = '' OR model IN (:model, :facts)",
                {"model": model, "facts": FACTS_MODEL}) or 0)
            self._judgements_read, self._generations_read = last_judgement, last_generation
            return self.done
        if last_judgement > self._judgements_read:
            self.done += int(store.scalar(
                "SELECT COUNT(DISTINCT j.generation_id) FROM judgements j "
                "JOIN generations g ON g.id = j.generation_id "
                "WHERE j.id > :after AND j.id <= :last AND g.purpose = 'run' "
                "AND (:model = '' OR g.model = :model) AND NOT EXISTS (SELECT 1 FROM judgements o "
                "WHERE o.generation_id = j.generation_id AND o.id <= :after)",
                {"after": self._judgements_read, "last": last_judgement, "model": model}) or 0)
            self._judgements_read = last_judgement
        if last_generation > self._generations_read:
            # A generation's pairs and gate verdicts commit with it, so its gates are known here.
            self.done += int(store.scalar(
                "SELECT COUNT(*) FROM generations g WHERE g.id > :after AND g.id <= :last "
                "AND g.purpose = 'run' AND (:model = '' OR g.model IN (:model, :facts)) "
                "AND (g.status <> 'ok' OR g.model = :facts OR ("
                f"{_ALL_GATED} AND NOT EXISTS (SELECT 1 FROM judgements j "
                "WHERE j.generation_id = g.id)))",
                {"after": self._generations_read, "last": last_generation, "model": model,
                 "facts": FACTS_MODEL}) or 0)
            self._generations_read = last_generation
        return self.done


_COUNTS_SQL = (
    "SELECT model, COALESCE(endpoint, ''), SUM(status = 'in_flight'), SUM(status = 'ok'), "
    "SUM(status = 'error' AND COALESCE(error_kind, '') != 'backpressure'), "
    "SUM(status = 'error' AND error_kind = 'backpressure'), SUM(COALESCE(tokens_out, 0)) "
    "FROM llm_calls WHERE run_id = ? AND id >= ? AND id < ? GROUP BY 1, 2")


class LedgerTally:
    """Per-endpoint call counts of one run, reading only ledger rows that can still change.

    Every row older than the oldest call in flight is final, so it is counted once and kept.
    """

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self._settled_below = 0
        self._settled: dict[tuple[str, str], list[int]] = {}

    def counts(self, store: Store) -> dict[tuple[str, str], list[int]]:
        """(model, endpoint) -> [in flight, done, errors, throttles, tokens out]."""
        if has_tallies(store):
            return self._from_tally(store)
        oldest = store.scalar("SELECT MIN(id) FROM llm_calls WHERE status = 'in_flight' "
                              "AND run_id = ?", (self.run_id,))
        end = int(oldest) if oldest is not None else \
            int(store.scalar("SELECT COALESCE(MAX(id), 0) FROM llm_calls") or 0) + 1
        if end > self._settled_below:
            for row in store.query(_COUNTS_SQL, (self.run_id, self._settled_below, end)):
                figures = self._settled.setdefault((row[0], row[1]), [0] * 5)
                for index in range(5):
                    figures[index] += int(row[2 + index] or 0)
            self._settled_below = end
        totals = {key: list(figures) for key, figures in self._settled.items()}
        for row in store.query(_COUNTS_SQL, (self.run_id, self._settled_below, 2 ** 62)):
            figures = totals.setdefault((row[0], row[1]), [0] * 5)
            for index in range(5):
                figures[index] += int(row[2 + index] or 0)
        return totals

    def _from_tally(self, store: Store) -> dict[tuple[str, str], list[int]]:
        totals: dict[tuple[str, str], list[int]] = {}
        if not in_flight_tallied(store):
            # Schema 10: the tally holds finished calls; the few in flight, by status index.
            for model, endpoint, n in store.query(
                    "SELECT model, COALESCE(endpoint, ''), COUNT(*) FROM llm_calls "
                    "WHERE status = 'in_flight' AND run_id = ? GROUP BY 1, 2", (self.run_id,)):
                totals.setdefault((model, endpoint), [0] * 5)[0] += n
        for model, endpoint, status, backpressure, n, tokens_out in store.query(
                "SELECT model, endpoint, status, backpressure, n, tokens_out FROM call_tally "
                "WHERE run_id = ?", (self.run_id,)):
            figures = totals.setdefault((model, endpoint), [0] * 5)
            if status == "in_flight":
                figures[0] += n
            elif status == "ok":
                figures[1] += n
            elif status == "error":
                figures[3 if backpressure else 2] += n
            figures[4] += tokens_out
        return {key: figures for key, figures in totals.items() if any(figures)}


def in_flight_tallied(store: Store) -> bool:
    """The call tally also counts calls in flight (schema 5 to 8; 10 counts finished ones)."""
    return bool(store.scalar("SELECT 1 FROM sqlite_master WHERE type = 'trigger' "
                             "AND name = 'call_tally_update'"))


def has_tallies(store: Store) -> bool:
    """The store keeps running tallies (schema 5 and later)."""
    return bool(store.scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                             "AND name = 'unit_tally'"))
