"""Report building blocks: headings, paragraphs, tables and plots, rendered as Markdown and HTML."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LABELS = {"ours": "ours (kept)", "generated": "ours (all generated)", "baseline": "baseline"}
COLOURS = {"ours": "#1f77b4", "generated": "#9ecae1", "baseline": "#ff7f0e"}


@dataclass(frozen=True)
class Heading:
    """A section title."""

    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    """Running text; `code` and **bold** are kept."""

    text: str


@dataclass(frozen=True)
class Table:
    """A table; the first column is a label, the others numbers."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Picture:
    """A plot file beside the report."""

    file_name: str
    caption: str


Block = Heading | Paragraph | Table | Picture


def num(value: float | None, digits: int = 1) -> str:
    """A number for a table cell; a dash for none."""
    return "–" if value is None else f"{value:,.{digits}f}"


def pct(value: float | None) -> str:
    """A 0..1 rate as a percentage; a dash for none."""
    return "–" if value is None else f"{100 * value:.1f}%"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(blocks: Sequence[Block]) -> str:
    """The blocks as GitHub-flavoured Markdown."""
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Table):
            lines.append("| " + " | ".join(_cell(h) for h in block.header) + " |")
            lines.append("|" + "|".join(["---"] + ["--:"] * (len(block.header) - 1)) + "|")
            lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows]
            lines.append("")
        else:
            lines += [f"![{block.caption}]({block.file_name})", ""]
    return "\n".join(lines)


_CSS = ("body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;"
        "color:#222}table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccc;"
        "padding:.25rem .5rem;text-align:right}th:first-child,td:first-child{text-align:left}"
        "th{background:#f3f3f3}img{max-width:100%}figcaption{color:#555;font-size:.9rem}"
        "code{background:#f3f3f3;padding:0 .2rem}")


def _inline(text: str) -> str:
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


def render_html(blocks: Sequence[Block]) -> str:
    """The blocks as one self-contained HTML page (inline CSS, no scripts)."""
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_inline(h)}</th>" for h in block.header)
            rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                           for row in block.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        else:
            body.append(f'<figure><img src="{html.escape(block.file_name)}" '
                        f'alt="{html.escape(block.caption)}"><figcaption>'
                        f"{_inline(block.caption)}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>visinstruct dataset report</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


# -- plot helpers ----------------------------------------------------------------------------
def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display: set before pyplot is imported
    import matplotlib.pyplot as plt

    return plt


def save_plot(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    partial = path.with_name(f".{path.stem}.partial.png")
    fig.savefig(partial, dpi=100, bbox_inches="tight")  # legends outside the axes stay in
    pyplot().close(fig)
    os.replace(partial, path)
    return path


def bars(ax: Any, groups: Sequence[str], series: dict[str, list[float]],
         counts: dict[str, int] | None = None, *, legend: bool = True) -> None:
    """Grouped bars; the legend names each series' n and sits outside the bars."""
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        label = LABELS[name] + (f" (n={counts[name]:,})" if counts and name in counts else "")
        ax.bar([x + (i - (len(series) - 1) / 2) * width for x in range(len(groups))], values,
               width, label=label, color=COLOURS[name])
    ax.set_xticks(range(len(groups)), groups, rotation=45, ha="right")
    if series and legend:
        ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.1), ncol=2,
                  frameon=False, borderaxespad=0.0)
