"""The report as Markdown: the same sections as the HTML, tables as pipe tables; plots are
described in words (the HTML report carries them)."""

from __future__ import annotations

from typing import Any

from monoculture.report.document import Figure, Table, sections, title


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _block(block: Any) -> str:
    if isinstance(block, Table):
        lines = ["| " + " | ".join(_cell(c) for c in block.header) + " |",
                 "|" + "---|" * len(block.header)]  # fmt: skip
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows]
        return "\n".join(lines)
    if isinstance(block, Figure):
        return f"*Plot in the HTML report: {block.alt}.*"
    return str(block)


def render_markdown(result: dict[str, Any], comparison: dict[str, Any] | None = None) -> str:
    parts = [f"# {title(result)}"]
    for section in sections(result, comparison):
        parts.append(f"## {section.heading}")
        parts += [_block(b) for b in section.blocks]
    return "\n\n".join(parts) + "\n"
