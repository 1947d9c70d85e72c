"""`monoculture plaintext`: the same result computed in the clear, from files one holds."""

from __future__ import annotations

import argparse

from monoculture.analysis.groups import plaintext_group_tables, with_groups
from monoculture.analysis.metrics import result_dict
from monoculture.analysis.table import plaintext_table
from monoculture.cli.common import (
    Commands,
    add_group_options,
    add_input_options,
    declared_groups,
    input_specs,
    write_result,
)
from monoculture.core.dataset import load_records
from monoculture.core.errors import ConfigError, MonocultureError
from monoculture.report import format_summary


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
    specs = input_specs(args)
    if len(specs) < 2:
        raise ConfigError("give at least two --company NAME=PATH")
    groups_from, labels = declared_groups(args, specs)
    outcomes, group_of = [], {}
    for name, spec in specs:
        try:
            records = load_records(spec, groups=name == groups_from)
            if records.groups is not None:  # undeclared labels are refused, as a daemon refuses them
                records.groups.round_codes(labels, where=str(spec.path))
                group_of = records.group_mapping()
            outcomes.append(records.as_mapping())
        except MonocultureError as exc:
            raise exc.for_party(name) from None
    names = [n for n, _ in specs]
    table = plaintext_table(names, outcomes)
    result = result_dict(table)
    if groups_from:  # the same group tables and figures as a round's, computed in the clear
        group_tables = plaintext_group_tables(names, outcomes, groups_from, group_of, labels)
        result = with_groups(result, table, group_tables)
    print(format_summary(result))
    write_result(result, args.out)
    return 0
