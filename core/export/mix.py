"""The whole training mix: mix665k's academic records as they were, the GPT-made ones out, ours in.

The mix file is streamed (bounded memory) and every record is placed by the one classifier
of mix665k (dataset/mix_parts.py). What goes out goes through the export writers, so a
mix that turns out truncated or malformed halfway leaves the output path as it was.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visinstruct.core.errors import ExportError
from visinstruct.core.export.validate import RuleViolation, check_mix_record
from visinstruct.core.export.writers import (
    ExportItem,
    ExportSummary,
    OutRecord,
    our_records,
    write_records,
)
from visinstruct.dataset.mix_parts import (
    MALFORMED,
    PARTS,
    SHAREGPT,
    UNCLASSIFIED,
    place_record,
)

OURS = "ours"
SHOWN_IDS = 5


@dataclass(frozen=True)
class MixOptions:
    """What besides the academic records and ours goes into the mix."""

    keep_text_only: bool = False      # ShareGPT's text-only records (made by ChatGPT)
    keep_unclassified: bool = False   # records the classifier cannot place


@dataclass
class MixTally:
    """Records by part as the mix streams: kept or removed from mix665k, and ours added."""

    read: int = 0
    kept: Counter[str] = field(default_factory=Counter)
    removed: Counter[str] = field(default_factory=Counter)
    added: Counter[str] = field(default_factory=Counter)      # ours, by task
    ours_pairs: int = 0
    unclassified_ids: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)        # "id: rule: detail", first few

    def table(self) -> list[tuple[str, int, int, int]]:
        """(part, kept, removed, added) for every part met, then ours, then the total."""
        rows = [(name, self.kept[name], self.removed[name], 0)
                for name in (*PARTS, UNCLASSIFIED, MALFORMED)
                if self.kept[name] or self.removed[name]]
        rows.append((OURS, 0, 0, sum(self.added.values())))
        rows.append(("total", sum(r[1] for r in rows), sum(r[2] for r in rows),
                     sum(r[3] for r in rows)))
        return rows


def table_lines(tally: MixTally) -> list[str]:
    """The tally as an aligned table for a terminal."""
    rows = [("part", "kept", "removed", "added"),
            *((name, f"{k:,}", f"{r:,}", f"{a:,}") for name, k, r, a in tally.table())]
    widths = [max(len(row[n]) for row in rows) for n in range(4)]
    return [f"{row[0]:<{widths[0]}}  " + "  ".join(
        f"{cell:>{widths[n + 1]}}" for n, cell in enumerate(row[1:])) for row in rows]


def check_mix_file(path: Path) -> None:
    """ExportError (exit 2) unless `path` is a readable regular file that opens a JSON array."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ExportError(f"{path}: no such file; give llava_v1_5_mix665k.json to --mix") from None
    except OSError as error:
        raise ExportError(f"{path}: cannot read it ({error.strerror or error})") from None
    if not stat.S_ISREG(mode):
        raise ExportError(f"{path}: is not a regular file; give llava_v1_5_mix665k.json to --mix")
    try:
        with path.open("rb") as stream:
            head = stream.read(4096).lstrip()
    except OSError as error:
        raise ExportError(f"{path}: cannot read it ({error.strerror or error})") from None
    if not head.startswith(b"["):
        raise ExportError(f"{path}: not a JSON array of records; give llava_v1_5_mix665k.json "
                          "to --mix")


def mix_records(path: Path, ours: Iterable[ExportItem], options: MixOptions,
                tally: MixTally) -> Iterator[OutRecord]:
    """The mix's records that stay, as they were, then ours; `tally` counts as they pass."""
    import ijson

    from visinstruct.dataset.coco import JSON_BACKEND

    with path.open("rb") as stream:
        try:
            for record in JSON_BACKEND.items(stream, "item", use_float=True):
                tally.read += 1
                row = _placed(record, options, tally)
                if row is not None:
                    yield row
        except (ijson.JSONError, UnicodeDecodeError) as error:
            reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
            raise ExportError(
                f"{path}: malformed or truncated JSON after {tally.read:,} records ({reason}); "
                "nothing was written") from None
    for row in our_records(ours):
        tally.added[str(row.fields["task"])] += 1
        tally.ours_pairs += row.pairs
        yield row


def _placed(record: Any, options: MixOptions, tally: MixTally) -> OutRecord | None:
    part = place_record(record, with_task=False).part
    violations: list[RuleViolation] = []
    if part == MALFORMED:
        pass
    else:
        keep = (PARTS[part].academic if part in PARTS else options.keep_unclassified) or (
            part == SHAREGPT and options.keep_text_only)
        if part == UNCLASSIFIED and len(tally.unclassified_ids) < SHOWN_IDS:
            tally.unclassified_ids.append(str(record.get("id")))
        if not keep:
            tally.removed[part] += 1
            return None
        # Only what is written must pass: a removed record may be as odd as it likes.
        violations = check_mix_record(record)
    if part == MALFORMED or violations:
        tally.removed[MALFORMED] += 1
        if len(tally.malformed) < SHOWN_IDS:
            record_id = record.get("id") if isinstance(record, dict) else None
            why = str(violations[0]) if violations else "not a mix665k record"
            # 0-based, as the validator counts records.
            tally.malformed.append(f"record {tally.read - 1} (id {record_id!r}): {why}")
        return None
    tally.kept[part] += 1
    turns = record["conversations"]
    return OutRecord(record, {"source": part}, len(turns) // 2)


def export_mix(path: Path, ours: Iterable[ExportItem], fmt: str, out: Path | str,
               options: MixOptions) -> tuple[ExportSummary, MixTally]:
    """Write the training mix to `out` atomically: on any error `out` is left as it was."""
    check_mix_file(path)
    tally = MixTally()
    summary = write_records(mix_records(path, ours, options, tally), fmt, out)
    return summary, tally
