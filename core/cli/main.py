"""The `visinstruct` command: headless commands, exit codes, stdout for data and stderr for talk."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from visinstruct import __version__
from visinstruct.core.cli.options import (
    config_from_args,
    run_config_from_args,
    stop_on_signals,
    threshold_for,
)
from visinstruct.core.errors import ExitCode, InputError, VisinstructError, sigterm_as_interrupt
from visinstruct.core.pipeline.tally import counted
from visinstruct.core.records import RunState
from visinstruct.core.sanitize.redact import redact


def _common(parser: argparse.ArgumentParser, *, config: bool = True) -> None:
    if config:
        parser.add_argument("--config", type=Path, help="run.toml (default: the embedded defaults)")
        parser.add_argument("--set", dest="overrides", action="append", default=[],
                            metavar="SECTION.KEY=VALUE",
                            help="override one config value, e.g. --set judge.threshold=8")
    parser.add_argument("--db", type=Path, help="the SQLite store (default: from the config, "
                                                "else ./visinstruct.db)")


def build_parser() -> argparse.ArgumentParser:
    """Every command and flag of the user's contract (docs/cli.md)."""
    parser = argparse.ArgumentParser(
        prog="visinstruct",
        description="Make LLaVA-style visual instruction data with open models.")
    parser.add_argument("--version", action="version", version=f"visinstruct {__version__}")
    sub = parser.add_subparsers(dest="command")

    tui = sub.add_parser("tui", help="the Textual app (the default command)")
    _common(tui)

    run = sub.add_parser("run", help="generate and judge over the configured source")
    _common(run)
    run.add_argument("--headless", action="store_true", help="no app: progress on stderr")
    run.add_argument("--limit", type=int, help="process at most N images (0: all)")
    run.add_argument("--json", action="store_true", help="print one JSON event per line on stdout")

    prepare = sub.add_parser("prepare", help="index COCO annotations and mix665k into the store")
    _common(prepare)
    prepare.add_argument("--coco-captions", type=Path, help="captions_*.json")
    prepare.add_argument("--coco-instances", type=Path, help="instances_*.json (boxes)")
    prepare.add_argument("--baseline", type=Path, help="llava_v1_5_mix665k.json")
    prepare.add_argument("--gqa-scene-graphs", type=Path, help="GQA *_sceneGraphs.json")
    prepare.add_argument("--gqa-questions", type=Path,
                         help="GQA *_balanced_questions.json "
                              "(or a folder of *_all_questions parts)")
    prepare.add_argument("--vqa-questions", type=Path,
                         help="VQAv2 v2_OpenEnded_mscoco_*_questions.json")
    prepare.add_argument("--vqa-annotations", type=Path, help="VQAv2 v2_mscoco_*_annotations.json")
    prepare.add_argument("--download", nargs="?", const="coco", default=None, metavar="SOURCES",
                         help="fetch sources first (resumable): coco (the COCO annotations and "
                              "mix665k, the default), gqa, vqa, comma-separated")
    prepare.add_argument("--data-dir", type=Path, help="where downloads go (default: ./data)")
    prepare.add_argument("--json", action="store_true", help="print the summary as JSON")

    export = sub.add_parser("export", help="write the kept data (llava, jsonl or hf)")
    _common(export)
    export.add_argument("--format", choices=("llava", "jsonl", "hf"), default="llava",
                        help="llava: the mix665k shape (default); jsonl: one record per line "
                             "with its source, models, scores and flags; hf: a datasets folder")
    export.add_argument("--out", type=Path, required=True,
                        help="output file (directory for hf; - for stdout)")
    export.add_argument("--threshold", type=float,
                        help="keep pairs scoring at least this (default: the run's threshold)")
    export.add_argument("--mix", type=Path, metavar="MIX665K.json",
                        help="write the whole training mix: llava_v1_5_mix665k.json's academic "
                             "records as they are, its GPT-made records out, ours in")
    export.add_argument("--keep-text-only", action="store_true",
                        help="with --mix: keep ShareGPT's text-only records (made by ChatGPT)")
    export.add_argument("--keep-unclassified", action="store_true",
                        help="with --mix: keep the records no rule places in a part")
    export.add_argument("--card", type=Path, metavar="CARD.md",
                        help="also write a dataset card (hf writes README.md in its folder)")
    export.add_argument("--exclude-flagged", action="store_true",
                        help="leave out pairs a quality gate flagged")

    status = sub.add_parser("status", help="what the store holds")
    _common(status)
    status.add_argument("--json", action="store_true", help="one JSON object on stdout")
    status.add_argument("--threshold", type=float, help="count kept pairs at this threshold")

    evaluate = sub.add_parser("evaluate", help="compare our data with the GPT-4 baseline")
    _common(evaluate)
    evaluate.add_argument("--mode", choices=("conversation", "answers"), default="conversation",
                          help="conversation: our conversations against GPT-4's (default); "
                               "answers: our generation model answers GPT-4's own questions")
    evaluate.add_argument("--sample", type=int, metavar="N",
                          help="images to compare; 0 for every image "
                               "(default: [evaluation].sample)")
    evaluate.add_argument("--seed", type=int, metavar="N",
                          help="seed of the image sample (default: [evaluation].seed)")
    evaluate.add_argument("--json", action="store_true", help="print the results as one object")

    analyze = sub.add_parser("analyze", help="statistics report, ours vs baseline")
    _common(analyze)
    analyze.add_argument("--out", type=Path, required=True, help="report directory")

    deploy = sub.add_parser("deploy", help="create a SageMaker endpoint for Mixtral (TGI)")
    deploy.add_argument("--name", required=True, help="endpoint name")
    deploy.add_argument("--instance-type", default="ml.g5.48xlarge",
                        help="SageMaker instance type (default: ml.g5.48xlarge)")
    deploy.add_argument("--instance-count", type=int, default=1,
                        help="instances behind the endpoint (default: 1)")
    deploy.add_argument("--role", default=os.environ.get("SAGEMAKER_ROLE_ARN", ""),
                        help="execution role ARN (default: $SAGEMAKER_ROLE_ARN)")
    deploy.add_argument("--region", default="us-east-1", help="AWS region (default: us-east-1)")
    deploy.add_argument("--model-id", default="mistralai/Mixtral-8x7B-Instruct-v0.1",
                        help="Hugging Face model id (default: Mixtral 8x7B Instruct)")
    deploy.add_argument("--image-uri", default="", help="TGI container image (default: by region)")
    deploy.add_argument("--gpus", type=int, default=8, help="GPUs per shard (SM_NUM_GPUS)")
    deploy.add_argument("--max-input-tokens", type=int, default=24000,
                        help="longest prompt TGI accepts, in tokens (default: 24000)")
    deploy.add_argument("--max-total-tokens", type=int, default=32000,
                        help="prompt and reply together, in tokens (default: 32000)")
    deploy.add_argument("--max-batch-total-tokens", type=int, default=512000,
                        help="tokens in flight in one batch (default: 512000)")
    deploy.add_argument("--max-batch-prefill-tokens", type=int, default=None,
                        help="tokens prefilled per batch (default: --max-input-tokens)")
    deploy.add_argument("--dry-run", action="store_true", help="print what would be created")
    deploy.add_argument("--no-wait", action="store_true", help="do not wait for InService")
    deploy.add_argument("--poll-seconds", type=float, default=30.0,
                        help="seconds between status checks while waiting")
    deploy.add_argument("--wait-minutes", type=float, default=60.0,
                        help="give up waiting after this long (the endpoint keeps being created)")

    backup = sub.add_parser("backup", help="copy a store safely, even while a run writes it")
    backup.add_argument("--db", type=Path, help="the store to copy (default: ./visinstruct.db)")
    backup.add_argument("--out", type=Path, required=True, help="the copy's file name")

    batch = sub.add_parser("batch", help="this store's Bedrock batch jobs")
    batch_commands = batch.add_subparsers(dest="batch_command", required=True)
    stop = batch_commands.add_parser("stop", help="stop this store's open Bedrock batch jobs")
    _common(stop)

    teardown = sub.add_parser("teardown", help="delete an endpoint, its config and its model")
    teardown.add_argument("--name", required=True, help="endpoint name")
    teardown.add_argument("--region", default="us-east-1", help="AWS region (default: us-east-1)")
    teardown.add_argument("--dry-run", action="store_true", help="print what would be deleted")
    return parser


def _open_store(path: Path, *, for_writing: bool = False) -> Any:
    """The store as a context manager: SQLite trouble becomes one line naming the file."""
    from visinstruct.core.cli.stores import opened_store

    return opened_store(path, for_writing=for_writing)


def _say(message: str) -> None:
    print(redact(message), file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from visinstruct.core import pipeline

    # Without --config: the config the store was last run or prepared with (else the defaults).
    config = run_config_from_args(args, {"source.limit": args.limit})
    from visinstruct.core.models.credentials import check_aws_access

    # Before the app or the store: a run without credentials would only fail every call.
    check_aws_access(config, (config.generation.model, config.judge.model),
                     hint="; or run a local model: --set generation.model=tiny "
                          "--set judge.model=tiny")
    if not args.headless:
        return cmd_tui(args)
    cancel = threading.Event()
    from visinstruct.core.cli.headless import JsonLines, RichProgress
    from visinstruct.core.events import Event, RunFinished

    display: Any = JsonLines() if args.json else RichProgress()
    finished: list[RunFinished] = []

    def emit(event: Event) -> None:
        if isinstance(event, RunFinished):
            finished.append(event)
        display(event)

    from visinstruct.core.pipeline.panel import self_preference_warning

    left = ""
    with _open_store(config.db, for_writing=True) as store:
        warning = self_preference_warning(config)
        if warning:
            _say(warning)
        from visinstruct.core.pipeline.backlog import Backlog

        # Said before paying, never asked: units made under another prompt version (e.g.
        # before `vision` was turned on) are made again.
        for again in Backlog.load(config, store).redone():
            _say(again.describe())
        with stop_on_signals(cancel, "no new work", _say), display:
            summary = pipeline.run(config, store, emit, cancel)
        if summary.status != "finished":
            from visinstruct.core.cli.batch import left_running

            left = left_running(store, config.db)
    if isinstance(display, RichProgress) and finished:
        display.summary(finished[0])
        _say(f"store: {config.db}")
    if left:
        _say(left)
    if summary.status is RunState.FAILED:
        _say(f"visinstruct: the run failed: {summary.error}")
        return ExitCode.FAILED
    if summary.status is RunState.INTERRUPTED:
        return ExitCode.INTERRUPTED
    if summary.status is RunState.BUDGET:
        _say(f"stopped: the budget of ${config.budget.max_usd:,.2f} was reached")
        return ExitCode.BUDGET
    return ExitCode.FAILED if summary.failed_units else ExitCode.OK


def cmd_prepare(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from visinstruct.core.cli.prepare import downloaded_source, prepare_report
    from visinstruct.core.pipeline.indexer import index_sources

    config = config_from_args(args)
    source = config.source
    if args.download:
        source = downloaded_source(config, args.download, args.data_dir)
    given = {key: getattr(args, key) for key in PREPARE_FILE_KEYS}
    if args.download:
        # Files named beside --download join the downloaded ones.
        source = replace(source, **{k: v for k, v in given.items() if v is not None})
    elif any(given.values()):
        # Files named on the command line are the whole source: nothing comes from the config.
        source = replace(source, **given)
    for key in PREPARE_FILE_KEYS:
        path = getattr(source, key)
        if path is not None and not Path(path).exists():
            raise InputError(f"{path}: file not found (--{key.replace('_', '-')})")
    from visinstruct.core.config import validate_fact_sources

    validate_fact_sources(source, "prepare")
    with _open_store(config.db, for_writing=True) as store:
        summary = index_sources(store, source)
        result = prepare_report(store, summary, config)
        if args.config is not None or args.overrides:
            from visinstruct.core.store.run_config import record_prepared_config

            # The store remembers its config: a later `run --db` or the app's Start uses it.
            record_prepared_config(store, replace(config, source=source))
    if args.json:
        print(json.dumps(result))
    else:
        s = result["store"]
        _say(f"indexed {counted(summary.images, 'image')}, "
             f"{counted(summary.captions, 'caption')}, {counted(summary.boxes, 'box', 'boxes')}, "
             f"{counted(summary.baseline_conversations, 'baseline conversation')}"
             + (f", {counted(summary.gqa_images, 'GQA image')}" if summary.gqa_images else "")
             + (f", {counted(sum(summary.facts.values()), 'fact')}"
                if any(summary.facts.values()) else ""))
        print(f"{config.db}: {counted(s['images'], 'image')}, "
              f"{counted(s['captions'], 'caption')}, {counted(s['boxes'], 'box', 'boxes')} on "
              f"{counted(s['images_with_boxes'], 'image')}, "
              f"{counted(s['baseline_conversations'], 'baseline conversation')}, "
              f"{counted(s['facts'], 'fact')}; by source: "
              + ", ".join(f"{k} {v:,}" for k, v in s["images_by_source"].items()))
    return ExitCode.OK


PREPARE_FILE_KEYS: tuple[str, ...] = (
    "coco_captions", "coco_instances", "baseline", "gqa_scene_graphs", "gqa_questions",
    "vqa_questions", "vqa_annotations")


def _store_path(args: argparse.Namespace) -> Path:
    """The store a read command opens: --db, else the config's.

    A given --config or --set is still loaded, so a mistake in it is refused, not ignored.
    """
    if args.db is not None and args.config is None and not args.overrides:
        return Path(args.db)
    config = config_from_args(args)
    return Path(args.db) if args.db is not None else config.db


def cmd_status(args: argparse.Namespace) -> int:
    from visinstruct.core.cli.status import status_report

    db = _store_path(args)
    if not Path(db).is_file():
        raise InputError(f"{db}: no such store; run `visinstruct prepare` or `run` first")
    with _open_store(db) as store:
        report = status_report(store, threshold_for(args, store))
    if args.json:
        print(json.dumps(_finite(report), allow_nan=False))
    else:
        from visinstruct.core.cli.status import human_lines

        for line in human_lines(report):
            print(line)
    return ExitCode.OK


def _finite(value: Any) -> Any:
    """`value` with every infinite or NaN float as null: JSON has no Infinity (an absurd price
    can overflow a cost), and scripts must be able to parse what `--json` prints."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def cmd_tui(args: argparse.Namespace) -> int:
    if args.db is None and args.config is None and not args.overrides:
        store = Path("visinstruct.db")
        if not store.exists():
            _say(f"visinstruct: no --db or --config given: using {store.resolve()} "
                 "(created now; pass --db to use another store)")
    # The app sits above core, which never imports it: the entry point above both hands it in.
    open_app: AppOpener | None = getattr(args, "open_app", None)
    if open_app is None:
        raise InputError("the app opens from the `visinstruct` command (or `python -m "
                         "visinstruct`); this entry point runs the headless commands only")
    return int(open_app(args) or 0)


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    def call(args: argparse.Namespace) -> int:
        import importlib

        return int(getattr(importlib.import_module(module), name)(args))
    return call


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "prepare": cmd_prepare,
    "export": _lazy("visinstruct.core.cli.export", "cmd_export"),
    "status": cmd_status,
    "tui": cmd_tui,
    "evaluate": _lazy("visinstruct.core.cli.evaluate", "cmd_evaluate"),
    "analyze": _lazy("visinstruct.core.cli.evaluate", "cmd_analyze"),
    "deploy": _lazy("visinstruct.core.cli.deploy", "cmd_deploy"),
    "backup": _lazy("visinstruct.core.cli.backup", "cmd_backup"),
    "teardown": _lazy("visinstruct.core.cli.deploy", "cmd_teardown"),
    "batch": _lazy("visinstruct.core.cli.batch", "cmd_batch"),
}


AppOpener = Callable[[argparse.Namespace], int]
# Errors of writing to stdout that a command cannot help: disk full, I/O error, closed.
_STDOUT_ERRORS = (errno.ENOSPC, errno.EIO, errno.EBADF, errno.EDQUOT)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops a command as Ctrl-C does (exit 3, clean-up runs); `run` sets its own."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = sigterm_as_interrupt()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None, *, open_app: AppOpener | None = None) -> int:
    """Run one command; the exit code. `open_app` starts the app (from `visinstruct.entry`)."""
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    # Bare `visinstruct` is the app, with or without the app's flags (`visinstruct --db X`).
    if not words or (words[0].startswith("-") and words[0] not in ("-h", "--help", "--version")):
        words = ["tui", *words]
    args = parser.parse_args(words)
    args.open_app = open_app
    args.words = words  # the command as typed (the dataset card records it)
    command = args.command
    if sys.stdout is None and command in ("export", "status", "prepare", "backup"):
        _say("visinstruct: stdout is closed: nowhere to write the output (use --out FILE, or "
             "leave stdout open)")
        return int(ExitCode.BAD_INPUT)
    try:
        with _sigterm_interrupts():
            return int(COMMANDS[command](args))
    except VisinstructError as exc:
        _say(f"visinstruct: {exc.title.lower()}: {exc}")
        return int(exc.exit_code)
    except KeyboardInterrupt:
        _say("visinstruct: interrupted")
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, without a second error at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(ExitCode.OK)
    except OSError as exc:
        if exc.errno not in _STDOUT_ERRORS:
            raise
        # A full disk or device behind stdout (`> /dev/full`): one line, and no second error
        # when Python flushes stdout at exit.
        _say(f"visinstruct: cannot write the output: {exc.strerror or exc}")
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(ExitCode.FAILED)
    except sqlite3.DatabaseError as exc:  # met outside a command's own store handling
        from visinstruct.core.store.opening import translate

        error = translate(Path(getattr(args, "db", None) or "the store"), exc)
        _say(f"visinstruct: {error.title.lower()}: {error}")
        return int(error.exit_code)


if __name__ == "__main__":
    sys.exit(main())
