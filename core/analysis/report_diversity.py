"""Report sections on diversity (per dataset, per prompt version) and judge-human agreement."""

from __future__ import annotations

from pathlib import Path

from visinstruct.core.analysis.agreement import JudgeAgreement
from visinstruct.core.analysis.diversity import SAMPLE_CAP, Diversity
from visinstruct.core.analysis.figures import ALL, Figures
from visinstruct.core.analysis.render import (
    LABELS,
    Block,
    Heading,
    Paragraph,
    Picture,
    Table,
    bars,
    num,
    pct,
    pyplot,
    save_plot,
)

DIVERSITY_HEADER = ("words", "distinct-1", "distinct-2", "answers", "self-BLEU", "near-dup",
                    "zlib ratio", "questions", "top-10 templates")
EXPLAINED = (
    "Each figure compares samples of equal size: a dataset's answers and questions are "
    "shuffled (seed {seed}) and every dataset gives as many as the smallest one has, never "
    f"more than {SAMPLE_CAP:,} answers or questions, so a large store is sampled. "
    "**distinct-1/2**: unique words and word pairs over all words and pairs (higher = more "
    "varied). **self-BLEU**: the mean BLEU (sacrebleu, 13a tokens, 0..1) of each answer "
    "against all the other answers (higher = answers reuse each other's phrasing). "
    "**near-dup**: the share of answers whose word 3-gram set has a Jaccard similarity of 0.8 "
    "or more with another answer's. **zlib ratio**: the answers' bytes over their zlib size, "
    "on the same number of words (higher = more repetitive text). **top-10 templates**: the "
    "share of questions whose template is one of the ten most common; a template is the "
    "question in lowercase with every content word (anything but question words, auxiliaries, "
    "articles, pronouns, prepositions and a few more) masked as `_`, so \"What color is the "
    "bus?\" and \"What color is the car?\" share \"what color is the _\" (higher = the prompt "
    "collapses into a few question shapes).")


def diversity_cells(d: Diversity) -> tuple[str, ...]:
    """One side's figures in DIVERSITY_HEADER order."""
    return (f"{d.sample_tokens:,}", num(d.distinct_1, 3), num(d.distinct_2, 3),
            f"{d.sample_answers:,}", num(d.self_bleu, 3), pct(d.near_duplicate_rate),
            num(d.compression_ratio, 2), f"{d.sample_questions:,}", pct(d.template_share))


def diversity_blocks(figures: Figures, main: list[str]) -> list[Block]:
    """Every diversity figure per task, each dataset's row beside the others'."""
    rows = tuple((f"{key} · {LABELS[name]}",
                  *diversity_cells(figures.datasets[name][key].diversity))
                 for key in figures.slices for name in main)
    blocks: list[Block] = [Heading(2, "Lexical diversity of answers"),
                           Paragraph(EXPLAINED.format(seed=figures.seed)),
                           Table(("task · dataset", *DIVERSITY_HEADER), rows),
                           Picture("diversity.png", "Diversity, all tasks: ours against the "
                                   "baseline (lower self-BLEU, near-dup, zlib ratio and template "
                                   "share, and higher distinct-2, mean more varied data).")]
    sampled = [f"{LABELS[name]} has {figures.datasets[name][ALL].pairs:,} pairs"
               for name in main if figures.datasets[name][ALL].pairs > SAMPLE_CAP]
    if sampled:
        blocks.insert(2, Paragraph(f"Sampled: {'; '.join(sampled)}, so each figure above uses "
                                   f"{SAMPLE_CAP:,} of them at most (seed {figures.seed})."))
    for name in main:
        top = figures.datasets[name][ALL].diversity.top_templates[:5]
        if top:
            blocks.append(Paragraph(f"Most common question templates, {LABELS[name]}: " + "; ".join(
                f"`{text or '(empty)'}` ({count:,})" for text, count in top) + "."))
    return blocks


def version_blocks(figures: Figures) -> list[Block]:
    """Per generation prompt version: its pairs' diversity beside the baseline's on its images."""
    if not figures.version_diversity:
        return []
    with_baseline = figures.present["baseline"]
    rows: list[tuple[str, ...]] = []
    for v in figures.version_diversity:
        label = f"{v.name or v.task} {v.version} (images: {v.images:,})"
        rows.append((label, "ours", *diversity_cells(v.ours)))
        if with_baseline:
            rows.append((label, "GPT-4 on the same images", *diversity_cells(v.baseline)))
    return [Heading(2, "Diversity per prompt version"), Paragraph(
        "Every pair each generation prompt version made (before judging, so this is the "
        "prompt's own output), and the baseline's pairs of the same task on the same images, "
        "sampled to equal size as above. A version whose self-BLEU, near-dup or template share "
        "climbs above the baseline's is collapsing into templates."),
        Table(("prompt version", "side", *DIVERSITY_HEADER), tuple(rows))]


def _interval(value: float | None, interval: tuple[float, float] | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    if interval is None:
        return num(value, digits)
    return f"{num(value, digits)} [{num(interval[0], digits)}, {num(interval[1], digits)}]"


def agreement_cells(a: JudgeAgreement) -> tuple[tuple[str, str, str], ...]:
    """(figure, value [95% interval], n) rows of the agreement table."""
    return (("Cohen's kappa (kept vs accepted)", _interval(a.kappa, a.kappa_ci), f"{a.n:,}"),
            ("Spearman (score vs accepted)", _interval(a.spearman, a.spearman_ci), f"{a.n:,}"),
            ("precision of kept", _interval(a.precision, a.precision_ci), f"{a.kept:,} kept"),
            ("recall of human accepts", _interval(a.recall, a.recall_ci),
             f"{a.accepted:,} accepted"))


def agreement_blocks(figures: Figures) -> list[Block]:
    """The judge against blind human decisions."""
    a = figures.judge_agreement
    blocks: list[Block] = [Heading(2, "Judge against a human (blind review)")]
    if a is None or a.n == 0:
        return blocks + [Paragraph(
            "No blind review decisions yet: in the app's review screen press `B` for blind "
            "review, accept or reject pairs without seeing their score, and analyze again.")]
    best = ("–" if a.best_threshold is None
            else f"{a.best_threshold:g} (kappa {num(a.best_kappa, 2)})")
    return blocks + [Paragraph(
        f"{a.n:,} pairs decided blind (score and gate verdicts hidden): a human accepted "
        f"{a.accepted:,}, the judge keeps {a.kept:,} at threshold {a.threshold:g}. Brackets are "
        "95% bootstrap intervals (1,000 resamples of the decisions). Kappa 1 is full agreement, "
        "0 what chance alone gives; Spearman compares the judge's score with the human's "
        "accept (1) or reject (0). Blind review samples evenly across judge scores, so rare "
        "scores weigh more here than in the data; read precision and recall as the judge's "
        "behaviour across the score range rather than as the rates of the kept set."),
        Table(("figure", "value [95% interval]", "n"), agreement_cells(a)),
        Paragraph(f"The threshold that would agree best with these decisions: {best}.")]


def plot_diversity(figures: Figures, out_dir: Path) -> Path:
    """Self-BLEU, near-duplicates, zlib ratio, template share and distinct-2, all tasks."""
    plt = pyplot()
    names = [n for n in ("ours", "generated", "baseline") if figures.present[n]]
    metrics = (("self-BLEU", "self_bleu", 1.0), ("near-dup", "near_duplicate_rate", 1.0),
               ("zlib ratio / 10", "compression_ratio", 0.1),
               ("top-10 templates", "template_share", 1.0), ("distinct-2", "distinct_2", 1.0))
    fig, ax = plt.subplots(figsize=(8, 3.8))
    series = {name: [(getattr(figures.datasets[name][ALL].diversity, field) or 0.0) * scale
                     for _label, field, scale in metrics] for name in names}
    bars(ax, [label for label, _f, _s in metrics], series)
    ax.set_ylabel("value (0..1)")
    ax.set_title("Diversity of answers and questions, all tasks")
    return save_plot(fig, out_dir / "diversity.png")
