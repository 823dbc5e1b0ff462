"""`visinstruct backup`: a consistent copy of a store, even while a run writes it.

Copying the file alone loses what still sits in its WAL file; SQLite's backup API copies
the database as one transaction sees it, WAL included.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from pathlib import Path

from visinstruct.core.errors import ExitCode, ExportError, InputError, StoreError
from visinstruct.core.export.writers import writable_target
from visinstruct.core.store import opening
from visinstruct.core.store.files import refuse_store_target

PAGES_PER_STEP = 4096   # copy in steps, so a writer is never held off for long


def backup_store(source: Path, out: Path) -> int:
    """Copy `source` to `out` (replaced only once the copy is whole); returns the pages copied."""
    if not source.is_file():
        raise InputError(f"{source}: no such store; pass the store to copy with --db")
    refuse_store_target(out, source)
    if out.is_dir():
        raise InputError(f"{out}: is a folder; --out takes a file name")
    try:
        out = writable_target(out, stdout_hint="")  # a FIFO or a device is never replaced
    except ExportError as exc:
        raise InputError(str(exc)) from exc
    if not out.parent.is_dir():
        raise InputError(f"{out.parent}: no such folder for --out")
    partial = out.with_name(f".{out.name}.partial")
    partial.unlink(missing_ok=True)
    opening.check_header(source)
    # A store this process cannot write (a read-only mount, a chmod-444 file) is read as the
    # reading commands read it, creating nothing beside it; any other through its WAL.
    src = opening.connect(source, readonly=opening.unwritable_reason(source) is not None)
    try:
        opening.check_pages(src, source)  # a copy of damaged pages is no backup
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst, pages=PAGES_PER_STEP)
            pages = int(dst.execute("PRAGMA page_count").fetchone()[0])
            # One file that opens anywhere: no WAL beside the copy.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise StoreError(f"{source}: cannot back up the store: {exc}") from exc
    finally:
        src.close()
    os.replace(partial, out)
    return pages


def cmd_backup(args: argparse.Namespace) -> int:
    """Copy --db (default ./visinstruct.db) to --out and print the copy's path."""
    source = Path(args.db) if args.db is not None else Path("visinstruct.db")
    out = Path(args.out)
    pages = backup_store(source, out)
    print(f"backed up {source} ({pages:,} pages) to {out}", file=sys.stderr)
    print(out)
    return int(ExitCode.OK)
