"""Events go to listeners on a thread of their own, in order; failures are told once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from visinstruct.core.events import Dispatcher, EvaluationNotice, Event
from visinstruct.core.store.database import Store


def notices(n: int) -> list[Event]:
    return [EvaluationNotice(f"notice {i}") for i in range(n)]


def test_events_arrive_in_order_on_another_thread_and_close_delivers_them_all() -> None:
    seen: list[tuple[Event, str]] = []
    dispatcher = Dispatcher(lambda e: seen.append((e, threading.current_thread().name)))
    sent = notices(500)
    for event in sent:
        dispatcher(event)
    dispatcher.close()
    assert [e for e, _ in seen] == sent
    assert {name for _, name in seen} == {"event-dispatcher"}


def test_a_listener_that_raises_is_reported_once_and_keeps_receiving(
        capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[Event] = []

    def listener(event: Event) -> None:
        seen.append(event)
        raise RuntimeError("the screen went away")

    dispatcher = Dispatcher(listener)
    for event in notices(5):
        dispatcher(event)
    dispatcher.close()
    assert len(seen) == 5 and dispatcher.failures == 5
    assert capsys.readouterr().err.count("the screen went away") == 1


def test_emitting_never_waits_for_a_blocked_listener() -> None:
    release = threading.Event()
    dispatcher = Dispatcher(lambda e: release.wait(30))
    for event in notices(1000):  # would block at once if emitting waited
        dispatcher(event)
    release.set()
    dispatcher.close()


def test_a_failing_after_commit_callback_is_reported_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def broken(_: object) -> None:
        raise ValueError("callback broke")

    with Store(tmp_path / "s.db") as store:
        for _ in range(3):
            store.write(lambda conn: None, on_commit=broken).result()
        assert store.failed_callbacks == 3
    assert capsys.readouterr().err.count("callback broke") == 1


def test_a_write_that_raises_is_undone_and_its_on_error_runs_in_its_place(tmp_path: Path) -> None:
    def write(conn: object) -> int:
        conn.execute("INSERT INTO meta VALUES ('half', 'written')")  # type: ignore[attr-defined]
        raise ValueError("then it broke")

    def on_error(conn: object, exc: Exception) -> str:
        conn.execute("INSERT INTO meta VALUES ('why', ?)", (str(exc),))  # type: ignore[attr-defined]
        return "fallback"

    with Store(tmp_path / "s.db") as store:
        good = store.write(lambda conn: conn.execute("INSERT INTO meta VALUES ('ok', '1')"))
        assert store.write(write, on_error=on_error).result() == "fallback"
        good.result()
        assert store.get_meta("half") is None
        assert (store.get_meta("why"), store.get_meta("ok")) == ("then it broke", "1")


def test_events_emitted_while_it_closes_are_each_delivered_once() -> None:
    for _round in range(20):
        seen: list[Event] = []
        dispatcher = Dispatcher(seen.append)
        start = threading.Barrier(5)
        batches = [notices(300) for _ in range(4)]

        def emit_all(events: list[Event], start: threading.Barrier = start,
                     dispatcher: Dispatcher = dispatcher) -> None:
            start.wait()
            for event in events:
                dispatcher(event)

        threads = [threading.Thread(target=emit_all, args=(b,)) for b in batches]
        for thread in threads:
            thread.start()
        start.wait()
        dispatcher.close()  # while the emitters are mid-way
        for thread in threads:
            thread.join()
        assert len(seen) == 1200 and len({id(e) for e in seen}) == 1200
        for batch in batches:  # each emitter's events in the order it sent them
            mine = {id(e) for e in batch}
            assert [e for e in seen if id(e) in mine] == batch
