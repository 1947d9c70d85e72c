"""`monoculture plaintext`: the same result computed in the clear, from files one holds."""

from __future__ import annotations

import argparse

from monoculture.cli.common import (
    Commands,
    add_group_options,
    add_input_options,
    declared_groups,
    input_specs,
    write_result,
)
from monoculture.core.errors import ConfigError, MonocultureError
from monoculture.report import format_summary
from monoculture.research.api import plaintext_result


def add_parser(commands: Commands) -> None:
    plain = commands.add_parser(
        "plaintext", help="the same result computed in the clear, from files you hold"
    )
    add_input_options(plain)
    add_group_options(
        plain, labels_help="the declared group labels, in order (default: those of the file, sorted)"
    )
    plain.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from monoculture.client.sources import load_records  # a file, or a query (a daemon's config)

    specs = input_specs(args)
    if len(specs) < 2:
        raise ConfigError("give at least two --company NAME=PATH")
    groups_from, labels = declared_groups(args, specs)
    records = {}
    for name, spec in specs:
        try:
            records[name] = load_records(spec, groups=name == groups_from)
            column = records[name].groups
            if column is not None:  # undeclared labels are refused, as a daemon refuses them
                column.round_codes(labels, where=spec.origin)
        except MonocultureError as exc:
            raise exc.for_party(name) from None
    # the same tables and figures as a round's, group ones included, computed in the clear
    result = plaintext_result(records, groups_from, labels)
    print(format_summary(result))
    write_result(result, args.out)
    return 0
