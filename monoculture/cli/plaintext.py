"""`monoculture plaintext`: the same result computed in the clear, from files one holds."""

from __future__ import annotations

import argparse

from monoculture.analysis.metrics import result_dict
from monoculture.analysis.table import plaintext_table
from monoculture.cli.common import Commands, add_input_options, input_specs, write_result
from monoculture.core.dataset import load_records
from monoculture.core.errors import ConfigError, MonocultureError
from monoculture.report import format_summary


def add_parser(commands: Commands) -> None:
    plain = commands.add_parser(
        "plaintext", help="the same result computed in the clear, from files you hold"
    )
    add_input_options(plain)
    plain.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    specs = input_specs(args)
    if len(specs) < 2:
        raise ConfigError("give at least two --company NAME=PATH")
    outcomes = []
    for name, spec in specs:
        try:
            outcomes.append(load_records(spec).as_mapping())
        except MonocultureError as exc:
            raise exc.for_party(name) from None
    result = result_dict(plaintext_table([n for n, _ in specs], outcomes))
    print(format_summary(result))
    write_result(result, args.out)
    return 0
