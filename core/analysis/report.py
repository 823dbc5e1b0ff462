"""The analysis report: figures.json, report.md, report.html and their PNG plots."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from visinstruct.core.analysis.figures import ALL, Figures, SliceStats
from visinstruct.core.analysis.render import (
    COLOURS,
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
    render_html,
    render_markdown,
    save_plot,
)
from visinstruct.core.analysis.report_diversity import (
    agreement_blocks,
    diversity_blocks,
    plot_diversity,
    version_blocks,
)
from visinstruct.core.errors import ExportError


def _atomic_write(path: Path, data: bytes) -> None:
    # Readers never see half a file: write beside it, then rename over it.
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def write_report(figures: Figures, out_dir: Path) -> list[Path]:
    """Write figures.json, the plots, report.md and report.html into `out_dir`; return the paths."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        written = [path for path in (plot(figures, out_dir) for plot in PLOTS)]
        blocks = report_blocks(figures)
        for name, text in (("figures.json", figures.to_json() + "\n"),
                           ("report.md", render_markdown(blocks)),
                           ("report.html", render_html(blocks))):
            _atomic_write(out_dir / name, text.encode("utf-8"))
            written.append(out_dir / name)
    except OSError as exc:
        raise ExportError(f"{out_dir}: cannot write the report: {exc.strerror or exc}; "
                          "pass another --out folder") from exc
    return written


# -- the text --------------------------------------------------------------------------------
def _present(figures: Figures, names: Sequence[str]) -> list[str]:
    return [name for name in names if figures.present[name]]


def _slices(figures: Figures, name: str) -> list[tuple[str, SliceStats]]:
    return [(key, figures.datasets[name][key]) for key in figures.slices]


def report_blocks(figures: Figures) -> list[Block]:
    """The report as blocks that render to Markdown and to HTML alike."""
    main = _present(figures, ("ours", "baseline"))
    every = _present(figures, ("ours", "generated", "baseline"))
    blocks: list[Block] = [Heading(1, "visinstruct dataset report"), *_intro(figures)]
    blocks += [Heading(2, "Counts"), Table(
        ("task", *(f"{LABELS[n]}: conversations / pairs / images" for n in every)),
        tuple((key, *(f"{s.conversations:,} / {s.pairs:,} / {s.images:,}"
                      for s in (figures.datasets[n][key] for n in every)))
              for key in figures.slices))]
    blocks += [Heading(2, "Turns per conversation"), Table(
        ("task", *(f"{LABELS[n]}: {m}" for n in main for m in ("mean", "median"))),
        tuple((key, *(v for n in main for v in (num(figures.datasets[n][key].turns.mean, 2),
                                                num(figures.datasets[n][key].turns.median))))
              for key in figures.slices))]
    blocks += [Paragraph(f"{LABELS[n]}, turns: conversations — " + ", ".join(
        f"{t}: {c:,}" for t, c in figures.datasets[n][ALL].turns.distribution.items()))
        for n in main]
    blocks.append(Heading(2, "Question and answer length (words)"))
    for part in ("question", "answer"):
        blocks.append(Table(
            (f"{part}s", *(f"{LABELS[n]}: {m}" for n in main
                           for m in ("mean", "median", "p10–p90"))),
            tuple((key, *(v for n in main for v in _length_cells(
                getattr(figures.datasets[n][key], f"{part}_words")))) for key in figures.slices)))
    blocks.append(Picture("answer_lengths.png", "Answer length in words: % of answers per bin."))
    blocks += _question_types(figures, main)
    blocks += diversity_blocks(figures, main)
    blocks += version_blocks(figures)
    blocks += _duplicates(figures, main)
    blocks += _grounding(figures, every)
    blocks += _judge(figures)
    blocks += _sight(figures)
    blocks += agreement_blocks(figures)
    return blocks


def _intro(figures: Figures) -> list[Block]:
    blocks: list[Block] = [Paragraph(
        f"The store holds {figures.images:,} images ({figures.images_with_boxes:,} with boxes). "
        f"**Ours** is the pairs kept at threshold {figures.threshold:g} (judge score at least "
        f"{figures.threshold:g} and no gate that dropped it, a short-answer record, or accepted "
        "by a reviewer; never one a reviewer rejected) of the current generations, one "
        "conversation per generation; **ours (all generated)** is every pair before judging. "
        f"The store's baseline has {figures.baseline_rows_total:,} conversations about "
        f"{figures.baseline_images_total:,} images; the **baseline** here is the "
        f"{figures.baseline_rows_used:,} of them about the {figures.baseline_images:,} "
        "images ours covers (every image of the store while nothing is generated), so both "
        "sides describe the same images. Every plot names n, the pairs (or answers) behind "
        "each bar series.")]
    if not figures.present["baseline"]:
        blocks.append(Paragraph("Baseline absent: no baseline conversation is about an image in "
                                "this store, so the report shows ours only."))
    if not figures.present["generated"]:
        blocks.append(Paragraph("No generated data yet: run `visinstruct run` to make some."))
    elif not figures.present["ours"]:
        blocks.append(Paragraph(f"No pair is kept at threshold {figures.threshold:g} yet."))
    return blocks


def _length_cells(dist: Any) -> tuple[str, str, str]:
    return num(dist.mean), num(dist.median), f"{num(dist.p10)}–{num(dist.p90)}"


def _question_types(figures: Figures, main: list[str]) -> list[Block]:
    def share(name: str, key: str, family: str) -> str:
        stats = figures.datasets[name][key]
        return pct(stats.question_types[family] / stats.pairs if stats.pairs else None)

    return [Heading(2, "Question types"), Paragraph(
        "By the question's first words; yes/no is a question opening with is, are, does, can "
        "...; describe is a request (describe, explain, tell me ...). Cells: "
        + " / ".join(LABELS[n] for n in main) + "."), Table(
        ("type", *figures.slices),
        tuple((family, *(" / ".join(share(n, key, family) for n in main) for key in figures.slices))
              for family in figures.question_families)),
        Picture("question_types.png", "Question types, all tasks: share of questions.")]


def _duplicates(figures: Figures, main: list[str]) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Near-duplicate questions across images"), Paragraph(
        "A question counts as a near-duplicate when its normalised form (lowercase, no "
        "punctuation, digits as #) is asked about two or more images: a high rate means the "
        "prompt collapses into templates."), Table(
        ("task", *(LABELS[n] for n in main)),
        tuple((key, *(f"{pct(d.rate)} ({d.duplicated:,} of {d.questions:,})"
                      for d in (figures.datasets[n][key].duplicates for n in main)))
              for key in figures.slices))]
    for name in main:
        top = figures.datasets[name][ALL].duplicates.top
        if top:
            blocks += [Paragraph(f"Most repeated questions, {LABELS[name]}:"), Table(
                ("template", "images", "questions"),
                tuple((t.text, f"{t.images:,}", f"{t.questions:,}") for t in top))]
    return blocks


def _grounding(figures: Figures, every: list[str]) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Grounding: objects named but not in the image"), Paragraph(
        "Each answer is searched for the 80 COCO category names, their plurals and a small "
        "synonym list (man, woman, people → person; bike → bicycle; sofa → couch ...). A named "
        "category with no box on the image counts as hallucinated. CHAIR_i = hallucinated / "
        "named categories; CHAIR_s = answers naming one or more hallucinated categories / "
        "answers naming any. Only images with boxes count. Lower is better. It is a rough "
        "check: a negation (\"there is no dog\") counts as a mention and an object COCO did not "
        "box counts as hallucinated, so read it as a comparison of datasets on the same images "
        "rather than as an absolute rate. On GQA images the names searched for are the "
        "object names of the store's GQA scene graphs, and a name that is not an object of "
        "that image's graph counts as hallucinated."),
        Table(("task", *(f"{LABELS[n]}: {m}" for n in every for m in ("CHAIR_i", "CHAIR_s"))),
              tuple((key, *(v for n in every for v in _chair_cells(figures.datasets[n][key])))
                    for key in figures.slices))]
    for name in every:
        g = figures.datasets[name][ALL].grounding
        top = ", ".join(f"{c} ({n:,})" for c, n in g.top_hallucinated) or "none"
        blocks.append(Paragraph(
            f"{LABELS[name]}: {g.answers_checked:,} answers checked, {g.answers_skipped:,} "
            f"skipped on {g.images_skipped:,} images without boxes; most hallucinated: {top}."))
    blocks.append(Picture("grounding.png", "CHAIR-style hallucination rates per task."))
    return blocks


def _chair_cells(stats: SliceStats) -> tuple[str, str]:
    g = stats.grounding
    return (f"{pct(g.chair_i)} ({g.hallucinated:,}/{g.mentions:,})",
            f"{pct(g.chair_s)} ({g.answers_with_hallucination:,}/{g.answers_with_mentions:,})")


def _judge(figures: Figures) -> list[Block]:
    j = figures.judge
    return [Heading(2, "Judge scores"), Paragraph(
        f"{j.pairs:,} current pairs, {j.judged:,} judged, mean score {num(j.mean_score, 2)}; "
        f"{j.kept:,} kept at threshold {j.threshold:g} ({pct(j.keep_rate)}); reviewers accepted "
        f"{j.accepted_by_review:,} and rejected {j.rejected_by_review:,}."),
        Table(("score", *j.histogram), (("pairs", *(f"{n:,}" for n in j.histogram.values())),)),
        Picture("judge_scores.png", f"Judge scores; the line marks the threshold {j.threshold:g}."),
        Paragraph("Per generation prompt version (every generation made with it, including "
                  "ones later replaced):"),
        Table(("prompt", "version", "generations", "parse failures", "pairs", "judged",
               "mean score", "kept", "keep rate"),
              tuple((v.name or "?", v.version, f"{v.generations:,}",
                     f"{v.parse_failures:,} ({pct(v.parse_failure_rate)})", f"{v.pairs:,}",
                     f"{v.judged:,}", num(v.mean_score, 2), f"{v.kept:,}", pct(v.keep_rate))
                    for v in j.versions))]


def _sight(figures: Figures) -> list[Block]:
    """Judge outcome and grounding by whether the generator and the judge saw the picture."""
    if not figures.sight:
        return []
    def saw(flag: bool) -> str:
        return "saw" if flag else "blind"

    return [Heading(2, "By picture: did the generator and the judge see it?"), Paragraph(
        "Our generated pairs (short answers aside) split by whether the call that wrote them "
        "carried the picture, and whether a judge that scored them did. Grounding is over "
        "every pair of the group, kept or not; a seeing judge can drop what the captions "
        "cannot show, so compare keep rates and CHAIR across the rows."),
        Table(("generator", "judge", "pairs", "judged", "mean score", "kept", "keep rate",
               "CHAIR_i", "CHAIR_s"),
              tuple((saw(g.generator_saw), saw(g.judge_saw), f"{g.pairs:,}", f"{g.judged:,}",
                     num(g.mean_score, 2), f"{g.kept:,}", pct(g.keep_rate),
                     f"{pct(g.grounding.chair_i)} "
                     f"({g.grounding.hallucinated:,}/{g.grounding.mentions:,})",
                     f"{pct(g.grounding.chair_s)} ({g.grounding.answers_with_hallucination:,}/"
                     f"{g.grounding.answers_with_mentions:,})")
                    for g in figures.sight))]


# -- the plots -------------------------------------------------------------------------------
def plot_answer_lengths(figures: Figures, out_dir: Path) -> Path:
    """Answer length histograms, ours vs baseline, per task."""
    plt = pyplot()
    main = _present(figures, ("ours", "baseline"))
    fig, axes = plt.subplots(1, len(figures.slices), figsize=(4 * len(figures.slices), 3.6),
                             sharey=True, squeeze=False)
    for ax, key in zip(axes[0], figures.slices, strict=True):
        series, counts = {}, {}
        for name in main:
            dist = figures.datasets[name][key].answer_words
            series[name] = [100 * n / dist.count if dist.count else 0 for n in dist.histogram]
            counts[name] = dist.count
        bars(ax, figures.length_bins, series, counts)
        ax.set_title(f"{key} answers")
        ax.set_xlabel("words")
    axes[0][0].set_ylabel("% of answers")
    return save_plot(fig, out_dir / "answer_lengths.png")


def plot_question_types(figures: Figures, out_dir: Path) -> Path:
    """Question types, ours vs baseline, as shares of all questions."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.8))
    series, counts = {}, {}
    for name in _present(figures, ("ours", "baseline")):
        stats = figures.datasets[name][ALL]
        series[name] = [100 * stats.question_types[family] / stats.pairs
                        for family in figures.question_families]
        counts[name] = stats.pairs
    bars(ax, figures.question_families, series, counts)
    ax.set_ylabel("% of questions")
    ax.set_title("Question types, all tasks")
    return save_plot(fig, out_dir / "question_types.png")


def plot_judge_scores(figures: Figures, out_dir: Path) -> Path:
    """The judge score histogram with the threshold marked."""
    plt = pyplot()
    judge = figures.judge
    fig, ax = plt.subplots(figsize=(7, 3.6))
    labels = list(judge.histogram)
    ax.bar(range(len(labels)), list(judge.histogram.values()), color=COLOURS["ours"])
    ax.set_xticks(range(len(labels)), labels)
    # Score s sits at x = s - 1; kept scores start right of the line.
    ax.axvline(judge.threshold - 1.5, color="#d62728", linestyle="--",
               label=f"threshold {judge.threshold:g}")
    ax.set_xlabel("judge score")
    ax.set_ylabel("pairs")
    ax.legend(fontsize=8)
    ax.set_title(f"Judge scores of the current pairs (n={sum(judge.histogram.values()):,})")
    return save_plot(fig, out_dir / "judge_scores.png")


def plot_grounding(figures: Figures, out_dir: Path) -> Path:
    """CHAIR_i and CHAIR_s per task for each dataset."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    every = _present(figures, ("ours", "generated", "baseline"))
    counts = {name: figures.datasets[name][ALL].pairs for name in every}
    for ax, metric in zip(axes, ("chair_i", "chair_s"), strict=True):
        series = {name: [100.0 * (getattr(figures.datasets[name][key].grounding, metric) or 0)
                         for key in figures.slices] for name in every}
        bars(ax, list(figures.slices), series, counts, legend=False)
        ax.set_title(metric.replace("chair", "CHAIR"))
    if every:  # one legend for both panels, below them: it never covers a bar
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=8, loc="upper center", ncol=len(every),
                   frameon=False, bbox_to_anchor=(0.5, 0.0))
    axes[0].set_ylabel("% hallucinated")
    return save_plot(fig, out_dir / "grounding.png")


PLOTS: tuple[Callable[[Figures, Path], Path], ...] = (
    plot_answer_lengths, plot_question_types, plot_judge_scores, plot_grounding,
    plot_diversity)
