"""Run plumbing that keeps the orchestrator cheap: the collector setting and pair ids by ref."""

from __future__ import annotations

import gc
import threading

from visinstruct.core.pipeline.collector import run_collector
from visinstruct.core.pipeline.generate import insert_generation
from visinstruct.core.pipeline.rows import GenerationRef, pair_ids
from visinstruct.core.records import Pair
from visinstruct.core.store.database import Store


def test_collector_is_restored_after_nested_and_overlapping_runs() -> None:
    before = gc.get_threshold()
    with run_collector():
        inside = gc.get_threshold()
        assert inside[0] >= before[0]
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
        assert gc.get_threshold() == inside  # the other run left first: still tuned
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_collector_restores_on_error() -> None:
    before = gc.get_threshold()
    try:
        with run_collector():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


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
