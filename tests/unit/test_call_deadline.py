"""The whole-call deadline: a cut comes at the deadline of a call still running, never after
the call ended (the connection may already carry the next call)."""

from __future__ import annotations

import threading

from visinstruct.core.errors import BackendError
from visinstruct.core.models.backends.deadline import call_deadline


def test_a_running_call_is_cut_at_its_deadline_and_an_ended_one_never() -> None:
    cuts: list[str] = []
    for n in range(2000):  # calls that end in time, their deadlines cancelled
        with call_deadline(0.2, lambda n=n: cuts.append(f"early {n}")) as deadline:
            pass
        assert not deadline.expired
    cut = threading.Event()
    with call_deadline(0.05, lambda: (cuts.append("slow"), cut.set())) as deadline:
        assert cut.wait(5)
    assert deadline.expired and cuts == ["slow"]
    threading.Event().wait(0.3)  # past every early deadline
    assert cuts == ["slow"]
    error = deadline.error("server x")
    assert (error.kind, error.error_class) == (BackendError.TRANSIENT, "CallTimeout")
    assert str(error) == "server x: CallTimeout: no whole reply within call_timeout = 0.05 s"
