"""The dataset card of an export: a Hugging Face YAML header, then what is inside and how made."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from visinstruct.core.export.mix import OURS, MixTally
from visinstruct.dataset.mix_parts import COCO_IMAGES_TERMS, MALFORMED, PARTS, UNCLASSIFIED

UNKNOWN = "unknown"
CARD_FILE = "README.md"  # where Hugging Face looks for a dataset's card


@dataclass(frozen=True)
class CardModel:
    """A model that made or judged our records: name, what it runs, its licence."""

    role: str            # generation | judge
    name: str
    model_id: str = ""
    license: str = ""
    saw_pictures: bool = False   # some call of it in this role carried the picture


@dataclass(frozen=True)
class CardFacts:
    """Everything the card says, gathered by the command from the store and the export."""

    command: str
    records: int                         # records written in all
    ours_records: int
    ours_pairs: int
    threshold: float
    models: Sequence[CardModel] = ()
    prompt_versions: Mapping[str, Sequence[str]] = field(default_factory=dict)
    gates: Mapping[str, Any] = field(default_factory=dict)
    pair_counts: Mapping[str, int] = field(default_factory=dict)  # generated, gated, ...
    flags_written: Mapping[str, int] = field(default_factory=dict)
    flags_left_out: Mapping[str, int] = field(default_factory=dict)
    exclude_flagged: bool = False
    comparison: Mapping[str, Any] | None = None   # relative_score, ci_low, ci_high, n, model
    tally: MixTally | None = None                 # None: our records alone, no mix665k
    pretty_name: str = ""   # default: named for what was written (our data, or a mix)

    @property
    def name(self) -> str:
        if self.pretty_name:
            return self.pretty_name
        return ("LLaVA-1.5 training mix without GPT-made records (visinstruct)"
                if self.tally is not None else "visinstruct visual instruction data")


def size_category(records: int) -> str:
    """Hugging Face's size bucket for a record count."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if records < limit:
            return name
    return "10M<n<100M"


def _licence(text: str) -> str:
    return text.strip() or UNKNOWN


def _yaml_text(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _header(facts: CardFacts) -> list[str]:
    licences = {_licence(m.license) for m in facts.models if m.role == "generation"}
    if facts.tally is not None:
        licences |= {PARTS[name].license for name in PARTS if facts.tally.kept[name]}
    single = next(iter(licences)) if len(licences) == 1 else ""
    lines = ["---"]
    if single and single != UNKNOWN and " " not in single:
        lines.append(f"license: {single.lower()}")
    else:
        # Several licences (or one not known): each part's is in the composition table.
        lines += ["license: other", "license_name: mixed"]
    sources = ["original"]
    if facts.tally is not None and sum(facts.tally.kept.values()):
        sources.append("extended|liuhaotian/LLaVA-Instruct-150K")
    lines += ["task_categories:", "- visual-question-answering", "- image-text-to-text",
              "language:", "- en", "size_categories:", f"- {size_category(facts.records)}",
              "source_datasets:", *(f"- {s}" for s in sources),
              f"pretty_name: {_yaml_text(facts.name)}", "---", ""]
    return lines


def _generation_licences(facts: CardFacts) -> str:
    names = [f"{m.name}: {_licence(m.license)}" for m in facts.models if m.role == "generation"]
    return "; ".join(names) or UNKNOWN


def _composition(facts: CardFacts) -> list[str]:
    lines = ["## Composition", "",
             "| part | what | answers made by | records | licence | terms |",
             "|---|---|---|---:|---|---|"]
    tally = facts.tally
    if tally is not None:
        for name, part in PARTS.items():
            if tally.kept[name]:
                lines.append(f"| {name} | {part.title} | {part.made_by} | {tally.kept[name]:,} "
                             f"| {part.license} | {part.link} |")
        if tally.kept[UNCLASSIFIED]:
            lines.append(f"| {UNCLASSIFIED} | records of mix665k no rule placed | {UNKNOWN} "
                         f"| {tally.kept[UNCLASSIFIED]:,} | {UNKNOWN} | {UNKNOWN} |")
    lines.append(f"| {OURS} | made by this project's models (below) | "
                 f"{', '.join(m.name for m in facts.models if m.role == 'generation') or '-'} | "
                 f"{facts.ours_records:,} | {_generation_licences(facts)} | the models' own |")
    lines += ["", f"{facts.records:,} records in all; ours hold {facts.ours_pairs:,} "
                  "question-answer pairs."]
    if tally is not None:
        removed = [f"{name} {count:,}" for name, count in sorted(tally.removed.items()) if count]
        lines += ["", "Left out of llava_v1_5_mix665k.json: " + (", ".join(removed) or "nothing")
                  + f" (of {tally.read:,} records read). LLaVA-Instruct's answers were made by "
                  "GPT-4 and ShareGPT's by ChatGPT, so they are replaced by ours or left out."]
    lines += ["", f"Images are not included. COCO images keep their Flickr licences "
                  f"({COCO_IMAGES_TERMS}); the other image sets keep their own terms.", ""]
    return lines


def _how_made(facts: CardFacts) -> list[str]:
    lines = ["## How our records were made", "",
             "| role | model | model id | licence | saw the picture |", "|---|---|---|---|---|"]
    for model in facts.models:
        lines.append(f"| {model.role} | {model.name} | {model.model_id or UNKNOWN} "
                     f"| {_licence(model.license)} | {'yes' if model.saw_pictures else 'no'} |")
    if not facts.models:
        lines.append(f"| - | {UNKNOWN} | {UNKNOWN} | {UNKNOWN} | {UNKNOWN} |")
    lines.append("")
    if facts.prompt_versions:
        lines.append("Prompt versions (content hashes): " + "; ".join(
            f"{task} {', '.join(versions)}" for task, versions in facts.prompt_versions.items())
            + ".")
    counts = facts.pair_counts
    if counts:
        lines.append(f"Pairs generated {counts.get('generated', 0):,}, dropped by a quality "
                     f"gate {counts.get('gated', 0):,}, judged {counts.get('judged', 0):,}, "
                     f"kept {counts.get('kept', 0):,} (a judge score of at least "
                     f"{facts.threshold:g} of 10, or a person's acceptance; short answers are "
                     "the datasets' own).")
    if facts.gates:
        lines.append("Quality gates: " + ", ".join(
            f"{key} = {_setting(value)}" for key, value in facts.gates.items()) + ".")
    written = ", ".join(f"{rule} {n:,}" for rule, n in sorted(facts.flags_written.items()))
    left = ", ".join(f"{rule} {n:,}" for rule, n in sorted(facts.flags_left_out.items()))
    lines.append("Pairs a gate flagged: " + (
        f"{written} written" if written else "none written")
        + (f"; left out by --exclude-flagged: {left}" if left else "") + ".")
    lines.append("")
    return lines


def _setting(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


_ANALYSIS_NOTE = ("Grounding (CHAIR) and diversity figures of ours beside the baseline are in "
                  "the report `visinstruct analyze --out DIR` writes; this card does not "
                  "compute them.")


def _comparison(facts: CardFacts) -> list[str]:
    lines = ["## Compared with the GPT-4 baseline", ""]
    found = facts.comparison
    if not found or found.get("relative_score") is None:
        return [*lines, "Not measured (run `visinstruct evaluate`).", "", _ANALYSIS_NOTE, ""]
    low, high = found.get("ci_low"), found.get("ci_high")
    interval = f" (95% interval {low:.1f}-{high:.1f})" if low is not None and high is not None \
        else ""
    return [*lines, f"Relative score {found['relative_score']:.1f}% of the GPT-4 answers"
                    f"{interval}, over {found.get('n', 0):,} compared items, judged by "
                    f"{found.get('model') or UNKNOWN} in both orders.", "", _ANALYSIS_NOTE, ""]


def _limitations(facts: CardFacts) -> list[str]:
    seeing = [m.name for m in facts.models if m.role == "generation" and m.saw_pictures]
    how = (f"from captions, boxes and facts, and by {', '.join(seeing)} with the picture too"
           if seeing else "from captions, boxes and facts, without seeing the picture")
    lines = ["## Known limitations", "",
             f"- Our answers were written by language models {how}; they can name things "
             "that are not in the picture. A judge model, not a person, kept most of them.",
             "- The licences above are those the sources publish for their annotations; "
             "\"unknown\" means none was found. Check each before commercial use."]
    if facts.tally is not None:
        lines += ["- mix665k's parts are told apart by image folder and by the prompts "
                  "LLaVA-1.5 gave each academic set; VQAv2 and OK-VQA share a prompt and are "
                  "one part here.",
                  f"- Records no rule placed: {facts.tally.removed[UNCLASSIFIED]:,} left out, "
                  f"{facts.tally.kept[UNCLASSIFIED]:,} kept; malformed records left out: "
                  f"{facts.tally.removed[MALFORMED]:,}."]
    if not facts.exclude_flagged and facts.flags_written:
        lines.append("- Pairs a gate flagged are included (export with --exclude-flagged to "
                     "leave them out).")
    return [*lines, ""]


def dataset_card(facts: CardFacts) -> str:
    """The card as Markdown with a YAML header, as a Hugging Face dataset page reads it."""
    lines = [*_header(facts), f"# {facts.name}", "",
             "Visual instruction data in LLaVA's format (one record per image and task: "
             "`id`, `image`, `conversations`)."
             + (" The whole training mix: the academic parts of LLaVA-1.5's "
                "llava_v1_5_mix665k.json as they were, its GPT-made parts replaced by records "
                "made by the models listed under \"How our records were made\"."
                if facts.tally is not None else ""), ""]
    lines += _composition(facts) + _how_made(facts) + _comparison(facts) + _limitations(facts)
    lines += ["## How this file was made", "", "```", facts.command, "```", ""]
    return "\n".join(lines)
