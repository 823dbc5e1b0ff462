"""The `visinstruct` command: headless commands, exit codes, stdout for data and stderr for talk."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

from visinstruct import __version__
from visinstruct.core.config import Config, load_config, parse_override
from visinstruct.core.errors import ExitCode, InputError, VisinstructError


def _common(parser: argparse.ArgumentParser, *, config: bool = True) -> None:
    if config:
        parser.add_argument("--config", type=Path, help="run.toml (default: the embedded defaults)")
        parser.add_argument("--set", dest="overrides", action="append", default=[],
                            metavar="SECTION.KEY=VALUE",
                            help="override one config value, e.g. --set judge.threshold=8")
    parser.add_argument("--db", type=Path, help="the SQLite store (default: from the config, "
                                                "else ./visinstruct.db)")


def build_parser() -> argparse.ArgumentParser:
    """Every command and flag of the user's contract (DESIGN.md)."""
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
    prepare.add_argument("--download", action="store_true",
                         help="fetch the COCO annotations and mix665k first (resumable)")
    prepare.add_argument("--data-dir", type=Path, help="where downloads go (default: ./data)")
    prepare.add_argument("--json", action="store_true", help="print the summary as JSON")

    export = sub.add_parser("export", help="write the kept data (llava, jsonl or hf)")
    _common(export)
    export.add_argument("--format", choices=("llava", "jsonl", "hf"), default="llava")
    export.add_argument("--out", type=Path, required=True, help="output file (directory for hf)")
    export.add_argument("--threshold", type=float,
                        help="keep pairs scoring at least this (default: the run's threshold)")

    status = sub.add_parser("status", help="what the store holds")
    _common(status)
    status.add_argument("--json", action="store_true", help="one JSON object on stdout")
    status.add_argument("--threshold", type=float, help="count kept pairs at this threshold")

    evaluate = sub.add_parser("evaluate", help="compare our data with the GPT-4 baseline")
    _common(evaluate)
    evaluate.add_argument("--mode", choices=("conversation", "answers"), default="conversation")
    evaluate.add_argument("--sample", type=int, help="images to compare (default: config)")
    evaluate.add_argument("--seed", type=int, help="sampling seed (default: config)")
    evaluate.add_argument("--json", action="store_true", help="print the results as one object")

    analyze = sub.add_parser("analyze", help="statistics report, ours vs baseline")
    _common(analyze)
    analyze.add_argument("--out", type=Path, required=True, help="report directory")

    deploy = sub.add_parser("deploy", help="create a SageMaker endpoint for Mixtral (TGI)")
    deploy.add_argument("--name", required=True, help="endpoint name")
    deploy.add_argument("--instance-type", default="ml.g5.48xlarge")
    deploy.add_argument("--instance-count", type=int, default=1)
    deploy.add_argument("--role", default=os.environ.get("SAGEMAKER_ROLE_ARN", ""),
                        help="execution role ARN (default: $SAGEMAKER_ROLE_ARN)")
    deploy.add_argument("--region", default="us-east-1")
    deploy.add_argument("--model-id", default="mistralai/Mixtral-8x7B-Instruct-v0.1")
    deploy.add_argument("--image-uri", default="", help="TGI container image (default: by region)")
    deploy.add_argument("--gpus", type=int, default=8, help="GPUs per shard (SM_NUM_GPUS)")
    deploy.add_argument("--max-input-tokens", type=int, default=24000)
    deploy.add_argument("--max-total-tokens", type=int, default=32000)
    deploy.add_argument("--max-batch-total-tokens", type=int, default=512000)
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

    teardown = sub.add_parser("teardown", help="delete an endpoint, its config and its model")
    teardown.add_argument("--name", required=True)
    teardown.add_argument("--region", default="us-east-1")
    teardown.add_argument("--dry-run", action="store_true")
    return parser


def _config(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Config:
    overrides: dict[str, Any] = dict(parse_override(o) for o in getattr(args, "overrides", []))
    if getattr(args, "db", None) is not None:
        overrides["db"] = args.db
    overrides.update({k: v for k, v in (extra or {}).items() if v is not None})
    return load_config(getattr(args, "config", None), overrides)


def _open_store(path: Path) -> Any:
    from visinstruct.core.store.database import Store

    return Store(path)


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from visinstruct.core import pipeline

    config = _config(args, {"source.limit": args.limit})
    if not args.headless:
        return cmd_tui(args)
    cancel = threading.Event()
    stops = {"n": 0}

    def on_signal(signum: int, _frame: object) -> None:
        stops["n"] += 1
        if stops["n"] > 1:
            _say("stopping now; calls in flight will be sent again on resume")
            os._exit(ExitCode.INTERRUPTED)
        _say("stopping: no new work; finishing calls in flight (press Ctrl-C again to quit now)")
        cancel.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    from visinstruct.core.events import Event, RunFinished
    from visinstruct.core.cli.headless import JsonLines, RichProgress

    display: Any = JsonLines() if args.json else RichProgress()
    finished: list[RunFinished] = []

    def emit(event: Event) -> None:
        if isinstance(event, RunFinished):
            finished.append(event)
        display(event)

    store = _open_store(config.db)
    try:
        with display:
            summary = pipeline.run(config, store, emit, cancel)
    finally:
        store.close()
    if isinstance(display, RichProgress) and finished:
        display.summary(finished[0])
        _say(f"store: {config.db}")
    if summary.status == "interrupted":
        return ExitCode.INTERRUPTED
    if summary.status == "budget":
        _say(f"stopped: the budget of ${config.budget.max_usd:,.2f} was reached")
        return ExitCode.BUDGET
    return ExitCode.FAILED if summary.failed_units else ExitCode.OK


def cmd_prepare(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from visinstruct.core.pipeline.indexer import index_sources

    config = _config(args)
    source = config.source
    if args.download:
        from visinstruct.dataset.download import download_sources, rich_progress

        data_dir = args.data_dir or config.download.data_dir
        with rich_progress() as progress:
            paths = download_sources(data_dir, coco_annotations_url=config.download.coco_annotations_url,
                                     mix665k_url=config.download.mix665k_url, progress=progress)
        by_name = {p.name: p for p in paths}
        source = replace(source, coco_captions=by_name.get("captions_train2017.json"),
                         coco_instances=by_name.get("instances_train2017.json"),
                         baseline=by_name.get("llava_v1_5_mix665k.json"))
    given = {"coco_captions": args.coco_captions, "coco_instances": args.coco_instances,
             "baseline": args.baseline}
    if any(given.values()):
        # Files named on the command line are the whole source: nothing comes from the config.
        source = replace(source, **given)
    for key in ("coco_captions", "coco_instances", "baseline"):
        path = getattr(source, key)
        if path is not None and not Path(path).is_file():
            raise InputError(f"{path}: file not found (--{key.replace('_', '-')})")
    store = _open_store(config.db)
    try:
        summary = index_sources(store, source)
        from visinstruct.core.store.queries import status_counts

        counts = status_counts(store, config.judge.threshold)
    finally:
        store.close()
    result = {"added": summary.__dict__, "store": {k: counts[k] for k in (
        "images", "captions", "boxes", "images_with_boxes", "baseline_conversations",
        "baseline_images")}, "db": str(config.db)}
    if args.json:
        print(json.dumps(result))
    else:
        s = result["store"]
        _say(f"indexed {summary.images:,} images, {summary.captions:,} captions, "
             f"{summary.boxes:,} boxes, {summary.baseline_conversations:,} baseline conversations")
        print(f"{config.db}: {s['images']:,} images, {s['captions']:,} captions, "
              f"{s['boxes']:,} boxes on {s['images_with_boxes']:,} images, "
              f"{s['baseline_conversations']:,} baseline conversations")
    return ExitCode.OK


def _store_path(args: argparse.Namespace) -> Path:
    """The store a read command opens: --db, else the config's.

    A given --config or --set is still loaded, so a mistake in it is refused, not ignored.
    """
    if args.db is not None and args.config is None and not args.overrides:
        return Path(args.db)
    config = _config(args)
    return Path(args.db) if args.db is not None else config.db


def _threshold(store: Any, given: float | None, args: argparse.Namespace | None = None) -> float:
    """--threshold, else a config's [judge].threshold when one is given, else the last run's."""
    if given is not None:
        if not 1 <= given <= 10:
            raise InputError(f"--threshold {given}: must be between 1 and 10")
        return given
    if args is not None and (getattr(args, "config", None) or getattr(args, "overrides", None)):
        return _config(args).judge.threshold
    return float(store.get_meta("judge_threshold", "7") or 7)


def cmd_export(args: argparse.Namespace) -> int:
    from visinstruct.core.export.writers import ExportItem, export

    db = _store_path(args)
    if not Path(db).is_file():
        raise InputError(f"{db}: no such store; run `visinstruct run` first or pass --db")
    store = _open_store(db)
    try:
        from visinstruct.core.store.queries import kept_conversations

        threshold = _threshold(store, args.threshold, args)
        items = (ExportItem(image_id, task, pairs, meta={"prompt_version": version, "model": model})
                 for image_id, task, version, model, pairs in kept_conversations(store, threshold))
        summary = export(items, args.format, args.out)
    finally:
        store.close()
    _say(f"wrote {summary.records:,} conversations ({summary.pairs:,} pairs, threshold "
         f"{threshold:g}) to {summary.path}")
    print(summary.path)
    return ExitCode.OK


def cmd_status(args: argparse.Namespace) -> int:
    from visinstruct.core.cli.status import status_report

    db = _store_path(args)
    if not Path(db).is_file():
        raise InputError(f"{db}: no such store; run `visinstruct prepare` or `run` first")
    store = _open_store(db)
    try:
        report = status_report(store, _threshold(store, args.threshold, args))
    finally:
        store.close()
    if args.json:
        print(json.dumps(report))
    else:
        from visinstruct.core.cli.status import human_lines

        for line in human_lines(report):
            print(line)
    return ExitCode.OK


def cmd_tui(args: argparse.Namespace) -> int:
    if args.db is None and args.config is None and not args.overrides:
        store = Path("visinstruct.db")
        if not store.exists():
            _say(f"visinstruct: no --db or --config given: using {store.resolve()} "
                 "(created now; pass --db to use another store)")
    try:
        from visinstruct.tui.app import main as tui_main
    except ImportError as exc:
        raise InputError(f"the app cannot start: {exc}") from exc
    return int(tui_main(args) or 0)


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    def call(args: argparse.Namespace) -> int:
        import importlib

        return int(getattr(importlib.import_module(module), name)(args))
    return call


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "prepare": cmd_prepare,
    "export": cmd_export,
    "status": cmd_status,
    "tui": cmd_tui,
    "evaluate": _lazy("visinstruct.core.cli.evaluate", "cmd_evaluate"),
    "analyze": _lazy("visinstruct.core.cli.evaluate", "cmd_analyze"),
    "deploy": _lazy("visinstruct.core.cli.deploy", "cmd_deploy"),
    "backup": _lazy("visinstruct.core.cli.backup", "cmd_backup"),
    "teardown": _lazy("visinstruct.core.cli.deploy", "cmd_teardown"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "tui"
    if args.command is None:
        args = parser.parse_args(["tui", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(COMMANDS[command](args))
    except VisinstructError as exc:
        _say(f"visinstruct: {exc.title.lower()}: {exc}")
        return int(exc.exit_code)
    except KeyboardInterrupt:
        _say("visinstruct: interrupted")
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
