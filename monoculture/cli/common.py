"""Options and helpers shared by several command groups."""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monoculture.analysis.privacy import MECHANISMS
from monoculture.analysis.release import ReleasePolicy
from monoculture.core.dataset import DuplicatePolicy, InputSpec
from monoculture.core.errors import ConfigError, MonocultureError
from monoculture.core.protocol import check_groups

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
        help="a company and its CSV or Parquet file, or its daemon's config (.toml: the file or "
             "database query of its [data]) (repeat)",
    )  # fmt: skip
    parser.add_argument("--id-column", default="id", help="column of ids (default: id)")
    parser.add_argument(
        "--failure-column", default="failed",
        help="column of failure indicators, 0/1 or true/false (default: failed)",
    )  # fmt: skip
    parser.add_argument("--format", default="auto", choices=["auto", "csv", "parquet"])
    parser.add_argument(
        "--duplicates", default=DuplicatePolicy.REFUSE.value, choices=[p.value for p in DuplicatePolicy],
        help="what to do with repeated ids (default: refuse; see docs/USAGE.md)",
    )  # fmt: skip
    parser.add_argument(
        "--group-column", metavar="NAME",
        help="column of group labels, read from the file of the --groups-from company only",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="write the result JSON here")


def input_specs(args: argparse.Namespace) -> list[tuple[str, InputSpec]]:
    return [(name, _input_spec(args, path)) for name, path in args.company]


def _input_spec(args: argparse.Namespace, path: Path) -> InputSpec:
    if path.suffix == ".toml":  # a company daemon's config: read as its daemon reads its [data]
        from monoculture.client.config import load_client_config

        return load_client_config(path, insecure=True).data
    return InputSpec(path=path, id_column=args.id_column, failure_column=args.failure_column,
                     file_format=args.format, duplicates=DuplicatePolicy(args.duplicates),
                     group_column=args.group_column or None)  # fmt: skip


def labels_argument(value: str) -> tuple[str, ...]:
    """Comma-separated group labels (spaces around each are dropped)."""
    labels = tuple(label.strip() for label in value.split(","))
    if not all(labels):
        raise argparse.ArgumentTypeError(f"expected labels like a,b,c, got {value!r}")
    return labels


def add_group_options(parser: argparse.ArgumentParser, *, labels_help: str) -> None:
    """--groups-from COMPANY and --group-labels A,B,C (group-level homogenization)."""
    parser.add_argument(
        "--groups-from", default="", metavar="COMPANY",
        help="group-level homogenization over the groups of this company's group column",
    )  # fmt: skip
    parser.add_argument("--group-labels", type=labels_argument, metavar="A,B,C", help=labels_help)


def declared_groups(
    args: argparse.Namespace, specs: list[tuple[str, InputSpec]]
) -> tuple[str, tuple[str, ...]]:
    """(groups company, declared labels) from --groups-from / --group-labels / --group-column;
    ("", ()) without groups. Without --group-labels the labels are those of the groups
    company's file, sorted."""
    names = [name for name, _ in specs]
    if not args.groups_from:
        if args.group_labels or args.group_column:
            raise ConfigError("--group-labels and --group-column need --groups-from COMPANY")
        return "", ()
    if args.groups_from not in names:
        raise ConfigError(
            f"--groups-from {args.groups_from}: no --company of that name", hint=f"one of {', '.join(names)}"
        )
    if not args.group_column:
        raise ConfigError("--groups-from needs --group-column NAME, the column of group labels in its file")
    labels = args.group_labels
    if labels is None:
        from monoculture.client.sources import load_records  # a query's rows as a file's

        spec = dict(specs)[args.groups_from]
        try:
            column = load_records(spec, groups=True).groups
        except MonocultureError as exc:
            raise exc.for_party(args.groups_from) from None
        labels = tuple(sorted(column.labels)) if column is not None else ()
    try:
        check_groups(names, args.groups_from, labels)
    except MonocultureError as exc:
        raise ConfigError(exc.message, hint=exc.hint) from None
    return args.groups_from, labels


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


def warn_idle_options(companies: Sequence[str], *, rerandomise: bool) -> None:
    """Say, by name, when an option asked for protects nothing in this round."""
    if rerandomise and len(companies) == 2:
        logging.getLogger("monoculture").warning(
            "--rerandomise protects nothing in a round of two companies: the owner of a list holds "
            "the only pair key, so the coordinator with it links its ids as with masked tags "
            "(docs/PROTOCOL.md, 'Re-randomised tags'); it only costs time here"
        )
