"""`monoculture report`: a result JSON as a page people would rather look at than read."""

from __future__ import annotations

import argparse
from pathlib import Path

from monoculture.cli.common import Commands
from monoculture.core.errors import ConfigError, MonocultureError


def add_parser(commands: Commands) -> None:
    report = commands.add_parser(
        "report",
        help="render a result JSON as one self-contained HTML page (or Markdown)",
        description="Render a result JSON (from simulate --out, plaintext --out or round result) as one "
        "self-contained HTML file, plots inline and nothing fetched, or as Markdown.",
    )
    report.add_argument("result", type=Path, help="the result JSON")
    report.add_argument("--out", type=Path, required=True, help="where to write: .html, or .md for Markdown")
    report.add_argument(
        "--format", choices=("html", "markdown"), default=None, help="default: from the --out suffix"
    )
    report.add_argument(
        "--compare", type=Path, metavar="OLD", help="an earlier result JSON: add the change since it, with "
        "the self-defeating improvement flags",
    )  # fmt: skip
    report.add_argument(
        "--upstream-improved", action="store_true",
        help="with --compare: the shared upstream improved on its own objective between the two",
    )  # fmt: skip
    report.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from monoculture.research.result import Result

    result = Result.from_json(args.result)
    comparison = None
    if args.compare is not None:
        try:
            comparison = Result.from_json(args.compare).compare(
                result, upstream_improved=args.upstream_improved
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    kind = args.format or ("markdown" if args.out.suffix.lower() in (".md", ".markdown") else "html")
    if kind == "markdown":
        from monoculture.report.markdown import render_markdown

        text = render_markdown(result.raw, comparison)
    else:
        from monoculture.report.html import render_html

        try:
            text = render_html(result.raw, comparison)
        except ImportError as exc:
            raise ConfigError(
                f"the HTML report needs {exc.name}, which is not installed",
                hint="pip install 'monoculture[research]' (matplotlib, pandas, UpSetPlot)",
            ) from None
    try:
        args.out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise MonocultureError(f"cannot be written ({exc.strerror})", where=str(args.out)) from None
    print(f"wrote {args.out} ({kind})")
    return 0
