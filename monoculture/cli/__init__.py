"""The `monoculture` command line (docs/USAGE.md, "Command line"): one module per command group.

Expected failures (bad input, refused requests, failed rounds) print what is
wrong and what to do, and exit with status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from monoculture import __version__
from monoculture.cli import bench, certs, daemons, health, plaintext, report, research, round, simulate
from monoculture.cli.common import EXIT_ERROR
from monoculture.core.errors import MonocultureError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monoculture", description="Private measurement of outcome homogenization across companies."
    )
    parser.add_argument("--version", action="version", version=f"monoculture {__version__}")
    parser.add_argument(
        "--log-level", default=os.environ.get("MONOCULTURE_LOG_LEVEL", "INFO"),
        help="log level of daemons and progress (env MONOCULTURE_LOG_LEVEL)",
    )  # fmt: skip
    parser.add_argument(
        "--log-format", choices=("text", "json"), default=os.environ.get("MONOCULTURE_LOG_FORMAT", "text"),
        help="json: one JSON object per log line, for log collectors (env MONOCULTURE_LOG_FORMAT)",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    simulate.add_parser(commands)
    daemons.add_parsers(commands)
    certs.add_parser(commands)
    round.add_parser(commands)
    bench.add_parser(commands)
    plaintext.add_parser(commands)
    report.add_parser(commands)
    research.add_parsers(commands)
    health.add_parser(commands)
    return parser


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message (and the exception)."""

    def format(self, record: logging.LogRecord) -> str:
        import json
        from datetime import UTC, datetime

        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }  # fmt: skip
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    if args.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    try:
        return int(args.handler(args))
    except MonocultureError as exc:
        print(exc.diagnostics(), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
