"""What every command and the app read from their arguments: the config, the threshold, Ctrl-C.

One place, so `run`, `export`, `status`, `evaluate`, `analyze` and the app agree on which
threshold counts and on what a first and a second Ctrl-C do.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from visinstruct.core.config import Config, load_config, parse_override
from visinstruct.core.errors import ExitCode, InputError

THRESHOLD_KEY = "judge.threshold"


def overrides_from_args(args: argparse.Namespace,
                        extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """--set overrides, --db and `extra` (keys like 'source.limit'), as load_config takes them."""
    overrides: dict[str, Any] = dict(parse_override(o) for o in getattr(args, "overrides", None)
                                     or [])
    if getattr(args, "db", None) is not None:
        overrides["db"] = args.db
    overrides.update({k: v for k, v in (extra or {}).items() if v is not None})
    return overrides


def config_from_args(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Config:
    """The config from --config, --set overrides, --db and `extra` (keys like 'source.limit')."""
    return load_config(getattr(args, "config", None), overrides_from_args(args, extra))


def run_config_from_args(args: argparse.Namespace,
                         extra: dict[str, Any] | None = None) -> Config:
    """The config `run` and the app use: a --config file when given; else the config the store
    recorded (its last run's, or the one `prepare --config` was given), with --set and
    `extra` on top; else the embedded defaults. Its `origin` says which."""
    config = config_from_args(args, extra)
    if getattr(args, "config", None) is not None or not Path(config.db).is_file():
        return config
    from visinstruct.core.store.database import Store
    from visinstruct.core.store.opening import translate
    from visinstruct.core.store.run_config import config_for_store

    try:
        # Opened as any reading command opens it: an older store is upgraded first.
        with Store(config.db) as store:
            return config_for_store(store, config, overrides_from_args(args, extra))
    except sqlite3.DatabaseError as exc:
        raise translate(Path(config.db), exc) from exc


def threshold_for(args: argparse.Namespace, store: Any, config: Config | None = None) -> float:
    """The threshold a command counts kept pairs at.

    --threshold, else --set judge.threshold, else a --config file's, else the one the
    store's last run used, else the default: a store is read as its run judged it.
    """
    given = getattr(args, "threshold", None)
    if given is not None:
        if not 1 <= given <= 10:
            raise InputError(f"--threshold {given}: must be between 1 and 10")
        return float(given)
    config = config or config_from_args(args)
    overrides = [o.split("=", 1)[0].strip() for o in getattr(args, "overrides", None) or []]
    if THRESHOLD_KEY in overrides or getattr(args, "config", None) is not None:
        return float(config.judge.threshold)
    stored = store.get_meta("judge_threshold")
    try:
        return float(stored) if stored else float(config.judge.threshold)
    except ValueError:
        return float(config.judge.threshold)


@contextmanager
def stop_on_signals(cancel: threading.Event, stopping: str,
                    say: Callable[[str], None] | None = None) -> Iterator[None]:
    """SIGINT/SIGTERM set `cancel` (work in flight finishes); a second one quits at once.

    `stopping` says what stops, e.g. "no new work". The previous handlers come back after.
    """
    tell = say or (lambda message: print(message, file=sys.stderr))
    stops = 0

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stops
        stops += 1
        if stops > 1:
            tell("stopping now; calls in flight will be sent again on resume")
            os._exit(ExitCode.INTERRUPTED)
        tell(f"stopping: {stopping}; finishing calls in flight "
             "(press Ctrl-C again to quit now)")
        cancel.set()

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in saved:
        signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
