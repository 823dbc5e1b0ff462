"""Run plumbing that keeps the orchestrator cheap: the collector setting and pair ids by ref."""

from __future__ import annotations

import gc
import threading

from visinstruct.core.models.ledger import MAX_RAW
from visinstruct.core.pipeline.collector import run_collector
from visinstruct.core.pipeline.generate import insert_generation
from visinstruct.core.pipeline.rows import GenerationRef, pair_ids
from visinstruct.core.records import Pair
from visinstruct.core.store.database import Store


def test_collector_is_restored_after_nested_and_overlapping_runs() -> None:
    assert gc.isenabled()
    with run_collector():
        assert not gc.isenabled()  # paced by the clock instead
        assert gc.get_freeze_count() > 0
        entered, leave = threading.Event(), threading.Event()

        def other_run() -> None:
            with run_collector():
                entered.set()
                leave.wait(5)

        thread = threading.Thread(target=other_run)
        thread.start()
        assert entered.wait(5)
        leave.set()
        thread.join(5)
        assert not gc.isenabled()  # the other run left first: still paced
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
    assert not [t for t in threading.enumerate() if t.name == "gc-pacer"]


def test_collector_restores_on_error_and_keeps_a_disabled_collector_off() -> None:
    try:
        with run_collector():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()
    try:
        with run_collector():
            pass
        assert not gc.isenabled()  # as the caller had it
    finally:
        gc.enable()


def test_cycles_made_during_a_run_are_still_collected(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import weakref

    from visinstruct.core.pipeline import collector
    monkeypatch.setattr(collector, "_EVERY_S", 0.05)

    class Node:
        pass

    with run_collector():
        node = Node()
        node.self = node  # type: ignore[attr-defined]
        alive = weakref.ref(node)
        del node
        for _ in range(100):
            if alive() is None:
                break
            threading.Event().wait(0.05)
        assert alive() is None


def test_a_generation_ref_learns_its_pairs_ids(tmp_path) -> None:
    store = Store(tmp_path / "s.db")
    try:
        store.write_sync(lambda conn: conn.execute(
            "INSERT INTO images (id, file_name, width, height) VALUES (1, 'a.jpg', 10, 10)"))
        ref = GenerationRef()
        pairs = (Pair("What is red?", "The bus."), Pair("Where is it?", "On a street."))

        def write(conn):  # type: ignore[no-untyped-def]
            ref.id = insert_generation(conn, 1, "conversation", "v1", "m", None, "ok", "raw",
                                       pairs, (), ref=ref)
            return ref.id

        store.write_sync(write)
        stored = dict(store.query("SELECT idx, id FROM pairs WHERE generation_id = ?", (ref.id,)))
        assert ref.pair_ids == stored and len(stored) == 2
        # A plain id (a resumed unit) is looked up; a ref is not.
        assert store.write_sync(lambda conn: pair_ids(conn, int(ref.id or 0))) == stored
    finally:
        store.close()


def _calls(store: Store, rows: list[tuple[str, str, str, str | None, int]]) -> list[int]:
    """Insert ledger rows (model, endpoint, status, error_kind, tokens_out) of run 1."""
    def write(conn):  # type: ignore[no-untyped-def]
        return [conn.execute(
            "INSERT INTO llm_calls (key, run_id, stage, model, endpoint, attempt, status, "
            "error_kind, tokens_out, started_at) VALUES (?, 1, 'generate', ?, ?, 1, ?, ?, ?, 0)",
            (f"k{n}", model, endpoint, status, kind, tokens)).lastrowid
            for n, (model, endpoint, status, kind, tokens) in enumerate(rows)]
    return list(store.write_sync(write))


def _scanned(store: Store, monkeypatch) -> dict:  # type: ignore[no-untyped-def]
    from visinstruct.core.store import run_tallies
    with monkeypatch.context() as patched:
        patched.setattr(run_tallies, "has_tallies", lambda _store: False)
        return run_tallies.LedgerTally(1).counts(store)


def test_the_call_tally_agrees_with_a_scan_of_the_ledger(tmp_path, monkeypatch) -> None:
    from visinstruct.core.store.run_tallies import LedgerTally
    store = Store(tmp_path / "s.db")
    try:
        ids = _calls(store, [("m", "e1", "in_flight", None, 0)] * 4
                     + [("m", "e2", "ok", None, 5), ("j", "e1", "error", "backpressure", 0)])
        store.write_sync(lambda conn: conn.executemany(
            "UPDATE llm_calls SET status = ?, error_kind = ?, tokens_out = ? WHERE id = ?",
            [("ok", None, 7, ids[0]), ("error", "backpressure", 0, ids[1]),
             ("error", "transient", 0, ids[2])]))
        # A finished row changed again (a batch result arriving late), and one abandoned.
        store.write_sync(lambda conn: conn.execute(
            "UPDATE llm_calls SET tokens_out = 9 WHERE id = ?", (ids[0],)))
        expected = {("m", "e1"): [1, 1, 1, 1, 9], ("m", "e2"): [0, 1, 0, 0, 5],
                    ("j", "e1"): [0, 0, 0, 1, 0]}
        assert LedgerTally(1).counts(store) == expected == _scanned(store, monkeypatch)
    finally:
        store.close()


def test_a_store_tallied_before_schema_10_counts_its_calls_in_flight_once(
        tmp_path, monkeypatch) -> None:
    from visinstruct.core.store import database as store_module
    from visinstruct.core.store.run_tallies import LedgerTally
    from visinstruct.core.store.schema import MIGRATIONS
    path = tmp_path / "s.db"
    with monkeypatch.context() as patched:
        patched.setattr(store_module, "MIGRATIONS", tuple(m for m in MIGRATIONS if m[0] < 10))
        old = Store(path)
        ids = _calls(old, [("m", "e1", "in_flight", None, 0), ("m", "e1", "in_flight", None, 0),
                           ("m", "e1", "ok", None, 3)])
        assert LedgerTally(1).counts(old) == {("m", "e1"): [2, 1, 0, 0, 3]}
        old.close()
    store = Store(path)  # migration 10 runs here
    try:
        assert LedgerTally(1).counts(store) == {("m", "e1"): [2, 1, 0, 0, 3]}
        store.write_sync(lambda conn: conn.execute(
            "UPDATE llm_calls SET status = 'ok', tokens_out = 4 WHERE id = ?", (ids[0],)))
        assert LedgerTally(1).counts(store) == {("m", "e1"): [1, 2, 0, 0, 7]} \
            == _scanned(store, monkeypatch)
    finally:
        store.close()


def test_a_generation_keeps_its_raw_text_as_the_ledger_keeps_a_reply(tmp_path) -> None:
    store = Store(tmp_path / "s.db")
    try:
        store.write_sync(lambda conn: conn.execute(
            "INSERT INTO images (id, file_name, width, height) VALUES (1, 'a.jpg', 10, 10)"))
        huge = "x" * (MAX_RAW * 5)
        generation_id = store.write_sync(lambda conn: insert_generation(
            conn, 1, "conversation", "v1", "m", None, "parse_failure", huge, (), ()))
        (kept,) = store.query("SELECT raw FROM generations WHERE id = ?", (generation_id,))[0]
        assert kept == huge[:MAX_RAW]
    finally:
        store.close()
