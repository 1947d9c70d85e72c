"""A multiplicity sheet as one self-contained HTML page: the sheet's Markdown (its one text,
research/sheet.py) as HTML, and a plot of H against the selection metric for every cell, so a
reader sees equally good models whose outcomes are differently homogenized."""

from __future__ import annotations

import html
import re
from typing import Any

from monoculture.report.html import page, png


def _inline(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text))


def markdown_blocks(text: str) -> str:
    """The Markdown this project writes (headings, paragraphs, pipe tables, bold) as HTML."""
    out, table = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            if not re.fullmatch(r"\|(-+\|)+", line.replace(" ", "")):
                table.append([cell.strip() for cell in line.strip("|").split("|")])
            continue
        if table:
            head, *rows = table
            header = "".join(f"<th>{_inline(c)}</th>" for c in head)
            out.append(
                f"<table><thead><tr>{header}</tr></thead><tbody>"
                + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows)
                + "</tbody></table>"
            )  # fmt: skip
            table = []
        if line.startswith("# "):
            out.append(f"<h1>{_inline(line[2:])}</h1>")
        elif line.startswith("## "):
            out.append(f"<h2>{_inline(line[3:])}</h2>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    return "\n".join(out)


def h_against_metric(summary: dict[str, Any]) -> Any:
    """Every cell's H (with its interval) against the selection metric, one colour per axis."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), layout="constrained")
    ax = figure.add_subplot()
    for axis in summary["axes"]:
        cells = [c for c in summary["cells"] if c["axis"] == axis and c["homogenization"] is not None]
        xs = [c["metric"] for c in cells]
        ys = [c["homogenization"] for c in cells]
        low = [max(0.0, y - (c["ci95"] or [y, y])[0]) for y, c in zip(ys, cells, strict=True)]
        high = [max(0.0, (c["ci95"] or [y, y])[1] - y) for y, c in zip(ys, cells, strict=True)]
        ax.errorbar(xs, ys, yerr=[low, high], fmt="o", capsize=2, alpha=0.7, label=axis)
    ax.set_xlabel(f"{summary['selection']['select_on']} (mean over the companies)")
    ax.set_ylabel("homogenization H (95% CI)")
    ax.set_title("Equally good models, differently homogenized outcomes")
    ax.legend(fontsize="small")
    return figure


def render_sheet_html(summary: dict[str, Any], markdown: str) -> str:
    plot = png(h_against_metric(summary))
    body = markdown_blocks(markdown)
    alt = f"H against {html.escape(summary['selection']['select_on'])} for every cell"
    body += f'\n<img alt="{alt}" src="data:image/png;base64,{plot}">'
    return page(f"Multiplicity sheet of H on {summary['dataset']}", body, heading=False)
