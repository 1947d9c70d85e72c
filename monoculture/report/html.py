"""The report as one self-contained HTML file: no script, no stylesheet or font fetched, every
plot a PNG inside the page (data: URI). Opens offline in any browser."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from monoculture.report.document import Figure, Section, Table, sections, title

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8rem 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f3f3f3; } img { max-width: 100%; display: block; margin: 0.8rem 0; }
"""


def png(figure: Any) -> str:
    """A matplotlib figure as base64 PNG, for a data: URI."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _block(block: Any) -> str:
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in block.header)
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in block.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    if isinstance(block, Figure):
        drawn = block.draw()
        figure = getattr(drawn, "figure", drawn)
        return f'<img alt="{html.escape(block.alt)}" src="data:image/png;base64,{png(figure)}">'
    return f"<p>{html.escape(str(block))}</p>"


def _section(section: Section) -> str:
    return f"<h2>{html.escape(section.heading)}</h2>\n" + "\n".join(_block(b) for b in section.blocks)


def render_html(result: dict[str, Any], comparison: dict[str, Any] | None = None) -> str:
    """The HTML report of one result JSON."""
    body = "\n".join(_section(s) for s in sections(result, comparison))
    return page(title(result), body)


def page(heading_text: str, body: str, heading: bool = True) -> str:
    """One self-contained page: no script, nothing fetched (the CSP says so too)."""
    title_text = html.escape(heading_text)
    top = f"<h1>{title_text}</h1>" if heading else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'\">"
        f"<title>{title_text}</title><style>{_STYLE}</style></head>\n"
        f"<body>{top}\n{body}\n</body></html>\n"
    )
