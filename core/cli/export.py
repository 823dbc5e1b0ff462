"""`visinstruct export`: the kept records, or the whole training mix (`--mix`), and its card."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from visinstruct.core.cli.options import config_from_args, threshold_for
from visinstruct.core.config import Config
from visinstruct.core.errors import ExitCode, InputError
from visinstruct.core.export.card import CARD_FILE, CardFacts, CardModel, dataset_card
from visinstruct.core.export.mix import MixOptions, MixTally, check_mix_file, table_lines
from visinstruct.core.export.writers import (
    STDOUT,
    ExportItem,
    ExportSummary,
    writable_target,
    write_text_file,
)
from visinstruct.core.pipeline.tally import counted
from visinstruct.core.sanitize.redact import redact
from visinstruct.core.store.database import Store
from visinstruct.core.store.files import refuse_store_target
from visinstruct.core.store.provenance import (
    FlagTally,
    KeptConversation,
    ModelFacts,
    model_identifier,
    models_used,
    prompt_versions_used,
    recorded_gates,
    recorded_models,
)


def _say(message: str) -> None:
    print(redact(message), file=sys.stderr)


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_paths(args: argparse.Namespace, db: Path) -> Path | None:
    """Refuse, before any work, every output that would write over an input; the card path."""
    if str(args.out) != STDOUT:
        writable_target(args.out)  # a FIFO or device is refused before any work
        refuse_store_target(args.out, db)  # nor may the export write over the store
    if args.mix is not None:
        check_mix_file(args.mix)
        if str(args.out) != STDOUT and _same_file(args.out, args.mix):
            raise InputError(f"{args.out}: is the --mix file itself; choose another --out")
    card: Path | None = args.card
    if card is not None:
        writable_target(card, "")
        refuse_store_target(card, db, "--card")
        for other, flag in ((args.out, "--out"), (args.mix, "--mix")):
            if other is not None and str(other) != STDOUT and _same_file(card, other):
                raise InputError(f"{card}: is the {flag} path too; give the card its own file")
    return card


def _new_folder(folder: Path) -> Path | None:
    """The outermost folder of `folder` that does not exist yet (the export makes it), or None."""
    missing: Path | None = None
    for candidate in (folder, *folder.parents):
        if candidate.exists() or candidate.is_symlink():
            break
        missing = candidate
    return missing


def _model_facts(store: Store, config: Config | None) -> dict[str, ModelFacts]:
    """The runs' recorded models; a given --config adds what a run did not record."""
    models = recorded_models(store)
    for name, model in (config.models.items() if config is not None else ()):
        found = models.get(name)
        if found is None:
            models[name] = ModelFacts(name, model.backend, model_identifier(asdict(model)),
                                      model.license)
        elif not found.license and model.license:
            models[name] = replace(found, license=model.license)
    return models


def _items(conversations: Iterator[KeptConversation], models: dict[str, ModelFacts],
           gqa_ids: dict[int, str]) -> Iterator[ExportItem]:
    def facts(name: str) -> dict[str, str]:
        return models.get(name, ModelFacts(name)).as_dict()

    for kept in conversations:
        meta: dict[str, Any] = {
            "prompt_version": kept.prompt_version, "model": kept.model,
            "generation": facts(kept.model),
            "judges": [facts(name) for name in kept.judges],
            "pairs": list(kept.pair_facts), "flags": kept.flags}
        yield ExportItem(kept.image_id, kept.task, kept.pairs, meta=meta,
                         gqa_id=gqa_ids.get(kept.image_id, ""))


def cmd_export(args: argparse.Namespace) -> int:
    from visinstruct.core.cli.main import _store_path  # as `batch stop` finds its store
    from visinstruct.core.cli.stores import opened_store

    db = _store_path(args)
    if not Path(db).is_file():
        raise InputError(f"{db}: no such store; run `visinstruct run` first or pass --db")
    if args.mix is None and (args.keep_text_only or args.keep_unclassified):
        raise InputError("--keep-text-only and --keep-unclassified need --mix "
                         "llava_v1_5_mix665k.json")
    card_path = _check_paths(args, db)
    new_folder = None if str(args.out) == STDOUT else _new_folder(Path(args.out).parent)
    config = config_from_args(args) if args.config is not None or args.overrides else None
    to_stdout = str(args.out) == STDOUT
    flags = FlagTally()
    tally: MixTally | None = None
    with opened_store(db) as store:
        from visinstruct.core.store.provenance import kept_with_provenance
        from visinstruct.core.store.scene_queries import gqa_image_ids

        threshold = threshold_for(args, store)
        models = _model_facts(store, config)
        # The llava format is mix665k's shape alone: no judge scores to fetch for it.
        kept = kept_with_provenance(store, threshold, exclude_flagged=args.exclude_flagged,
                                    flags=flags, scores=args.format != "llava")
        items = _items(kept, models, gqa_image_ids(store))
        summary: ExportSummary
        if args.mix is not None:
            from visinstruct.core.export.mix import export_mix

            options = MixOptions(args.keep_text_only, args.keep_unclassified)
            summary, tally = export_mix(args.mix, items, args.format, args.out, options)
        else:
            from visinstruct.core.export.writers import export

            summary = export(items, args.format, args.out)
        cards = [p for p in (card_path, Path(summary.path) / CARD_FILE
                             if args.format == "hf" else None) if p is not None]
        if cards:
            text = dataset_card(_card_facts(args, store, models, threshold, summary, tally,
                                            flags))
            for path in cards:
                write_text_file(path, text)
    if new_folder is not None and new_folder.is_dir():
        _say(f"created folder {new_folder} (it did not exist)")
    _report(args, summary, tally, flags, threshold, to_stdout)
    for path in cards:
        _say(f"card: {path}")
    if not to_stdout:
        print(summary.path)
    return ExitCode.OK


def _report(args: argparse.Namespace, summary: ExportSummary, tally: MixTally | None,
            flags: FlagTally, threshold: float, to_stdout: bool) -> None:
    where = "stdout" if to_stdout else summary.path
    if tally is None:
        _say(f"wrote {counted(summary.records, 'conversation')} "
             f"({counted(summary.pairs, 'pair')}, threshold "
             f"{threshold:g}) to {where}")
    else:
        ours = sum(tally.added.values())
        _say(f"wrote {counted(summary.records, 'record')} ({ours:,} of ours at threshold "
             f"{threshold:g}; "
             f"{tally.read:,} read from {args.mix}) to {where}")
        for line in table_lines(tally):
            _say("  " + line)
        if tally.unclassified_ids:
            what = "kept (--keep-unclassified)" if args.keep_unclassified else "left out"
            count = tally.kept["unclassified"] + tally.removed["unclassified"]
            _say(f"unclassified records {what}: {count:,}; first ids: "
                 f"{', '.join(tally.unclassified_ids)}")
        for problem in tally.malformed:
            _say(f"malformed record left out: {problem}")
    ours = sum(tally.added.values()) if tally is not None else summary.records
    if not ours:
        what = "none of ours went into the mix" if tally is not None else "the export is empty"
        _say(f"warning: {what}: no pair is kept at threshold {threshold:g}; `visinstruct "
             "status` shows the store's pairs, a lower --threshold keeps more")
    if flags.written:
        _say("flagged pairs written: " + ", ".join(
            f"{rule} {n:,}" for rule, n in sorted(flags.written.items()))
            + " (--exclude-flagged leaves them out)")
    if flags.left_out:
        _say("flagged pairs left out (--exclude-flagged): " + ", ".join(
            f"{rule} {n:,}" for rule, n in sorted(flags.left_out.items())))


_STAGE_OF = {"generation": "generate", "judge": "judge"}  # a card role's ledger stage


def _card_facts(args: argparse.Namespace, store: Store, models: dict[str, ModelFacts],
                threshold: float, summary: ExportSummary, tally: MixTally | None,
                flags: FlagTally) -> CardFacts:
    from visinstruct.core.evaluation.view import evaluation_overview
    from visinstruct.core.store.queries import verdict_counts

    used = models_used(store)
    seeing = {(str(stage), str(model)) for stage, model in store.query(
        "SELECT DISTINCT stage, model FROM llm_calls WHERE pictures > 0")}
    card_models = [CardModel(role, name, models.get(name, ModelFacts(name)).model_id,
                             models.get(name, ModelFacts(name)).license,
                             saw_pictures=(_STAGE_OF[role], name) in seeing)
                   for role in ("generation", "judge") for name in used[role]]
    counts = verdict_counts(store, threshold)
    overview = evaluation_overview(store, resamples=1000)
    comparison = None
    if overview.chosen is not None:
        comparison = {**overview.overall.to_dict(), "model": overview.chosen.model}
    ours_records = sum(tally.added.values()) if tally is not None else summary.records
    ours_pairs = tally.ours_pairs if tally is not None else summary.pairs
    words = getattr(args, "words", None) or sys.argv[1:]
    return CardFacts(
        command=redact("visinstruct " + shlex.join(str(w) for w in words)),
        records=summary.records, ours_records=ours_records, ours_pairs=ours_pairs,
        threshold=threshold, models=card_models, prompt_versions=prompt_versions_used(store),
        gates=recorded_gates(store),
        pair_counts={"generated": counts.pairs, "gated": counts.dropped_by_gate,
                     "judged": counts.judged, "kept": counts.kept},
        flags_written=dict(flags.written), flags_left_out=dict(flags.left_out),
        exclude_flagged=args.exclude_flagged, comparison=comparison, tally=tally)

