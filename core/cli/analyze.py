"""`visinstruct analyze`: compute the dataset figures from the store and write the report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from visinstruct.core.cli.options import config_from_args, threshold_for
from visinstruct.core.errors import ExitCode, InputError
from visinstruct.core.pipeline.tally import counted


def cmd_analyze(args: argparse.Namespace) -> int:
    """Write report.md, report.html, figures.json and the plots into --out."""
    from visinstruct.core.analysis.figures import analyze
    from visinstruct.core.analysis.report import write_report
    from visinstruct.core.cli.stores import opened_store

    config = config_from_args(args)
    db = Path(config.db)
    out = Path(args.out)
    if not db.is_file():
        raise InputError(f"{db}: no such store; run `visinstruct prepare` or `run` first, "
                         "or pass --db")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; pass a folder to --out")
    with opened_store(db) as store:
        if not store.scalar("SELECT COUNT(*) FROM images"):
            raise InputError(f"{db}: the store holds no images; run `visinstruct prepare` "
                             "or `run` first")
        threshold = threshold_for(args, store, config)
        figures = analyze(store, threshold)
    paths = write_report(figures, out)
    ours = figures.datasets["ours"]["all"]
    baseline = figures.datasets["baseline"]["all"]
    print(f"analyzed {counted(ours.pairs, 'kept pair')} and "
          f"{counted(baseline.pairs, 'baseline pair')} on {counted(figures.images, 'image')} "
          f"(threshold {threshold:g}); report in {out}", file=sys.stderr)
    agreement = figures.judge_agreement
    if agreement is not None and agreement.n and agreement.kappa is not None:
        interval = ("" if agreement.kappa_ci is None
                    else f" [{agreement.kappa_ci[0]:.2f}, {agreement.kappa_ci[1]:.2f}]")
        print(f"judge vs human: kappa {agreement.kappa:.2f}{interval} on "
              f"{counted(agreement.n, 'blind review decision')}", file=sys.stderr)
    for path in paths:
        print(path)
    return int(ExitCode.OK)
