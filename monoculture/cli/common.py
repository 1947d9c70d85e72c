"""Options and helpers shared by several command groups."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from monoculture.analysis.privacy import MECHANISMS
from monoculture.analysis.release import ReleasePolicy
from monoculture.core.dataset import DuplicatePolicy, InputSpec
from monoculture.core.errors import ConfigError

EXIT_ERROR = 2
Commands = Any  # argparse's private _SubParsersAction


def company_argument(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {value!r}")
    return name.strip(), Path(path)


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """--company NAME=PATH (repeated) and how to read the files; --out."""
    parser.add_argument(
        "--company", action="append", type=company_argument, default=[], metavar="NAME=PATH",
        help="a company and its CSV or Parquet file (repeat)",
    )  # fmt: skip
    parser.add_argument("--id-column", default="id", help="column of ids (default: id)")
    parser.add_argument(
        "--failure-column", default="failed",
        help="column of failure indicators, 0/1 or true/false (default: failed)",
    )  # fmt: skip
    parser.add_argument("--format", default="auto", choices=["auto", "csv", "parquet"])
    parser.add_argument(
        "--duplicates", default=DuplicatePolicy.REFUSE.value, choices=[p.value for p in DuplicatePolicy],
        help="what to do with repeated ids (default: refuse; see README)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="write the result JSON here")


def input_specs(args: argparse.Namespace) -> list[tuple[str, InputSpec]]:
    return [
        (name, InputSpec(path=path, id_column=args.id_column, failure_column=args.failure_column,
                         file_format=args.format, duplicates=DuplicatePolicy(args.duplicates)))
        for name, path in args.company
    ]  # fmt: skip


def add_insecure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--insecure", action="store_true",
        help="plaintext gRPC without authentication; loopback only (loudly warned)",
    )  # fmt: skip


def add_certs_folder(parser: argparse.ArgumentParser, flag: str, help_text: str) -> None:
    """The PKI folder (env MONOCULTURE_CERTS, default ./certs)."""
    parser.add_argument(
        flag, type=Path, default=Path(os.environ.get("MONOCULTURE_CERTS", "certs")), help=help_text
    )


def add_release_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--min-shared",
        type=int,
        default=0,
        help="release: publish nothing below this many shared individuals",
    )
    parser.add_argument(
        "--min-cell-count", type=int, default=0,
        help="release: withhold pattern cells with fewer individuals (and complements)",
    )  # fmt: skip
    parser.add_argument(
        "--dp-mechanism", default="none", choices=list(MECHANISMS),
        help="release: differential privacy on the pattern counts",
    )  # fmt: skip
    parser.add_argument("--dp-epsilon", type=float, default=0.0, help="release: epsilon per round")
    parser.add_argument("--dp-delta", type=float, default=0.0, help="release: delta (discrete Gaussian)")


def release_policy(args: argparse.Namespace) -> ReleasePolicy:
    policy = ReleasePolicy(
        args.min_shared, args.min_cell_count, args.dp_mechanism, args.dp_epsilon, args.dp_delta
    )
    policy.check()
    return policy


def write_result(result: dict[str, Any], out: Path | None) -> None:
    if out is None:
        return
    try:
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the result ({exc.strerror})", where=str(out)) from None
    print(f"result written to {out}")
