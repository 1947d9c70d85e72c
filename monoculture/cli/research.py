"""`monoculture experiment` and `monoculture sheet`: the research workbench's commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from monoculture.cli.common import Commands


def add_parsers(commands: Commands) -> None:
    experiment = commands.add_parser(
        "experiment", help="train companies' models under data- and model-sharing regimes and measure each"
    )
    verbs = experiment.add_subparsers(dest="verb", required=True)
    run = verbs.add_parser(
        "run",
        help="run an experiment TOML (examples/experiments/digits.toml)",
        description="Train every company's model under each regime and seed, write the prediction files, "
        "measure each (plaintext or private) and compare the regimes with a paired bootstrap of H.",
    )
    run.add_argument("experiment", type=Path, help="the experiment TOML")
    run.add_argument(
        "--out", type=Path, required=True, help="folder for predictions, results and the summary"
    )
    run.set_defaults(handler=run_experiment)
    update = verbs.add_parser(
        "update",
        help="measure an update before and after and flag a self-defeating improvement "
        "(examples/experiments/upstream-update.toml, move-to-shared-data.toml)",
        description="Measure the companies before and after an update (a shared upstream improved on its own "
        "objective, or a company moving onto the data the others share) and compare the two as "
        "`round compare` does, flagging self-defeating improvements.",
    )
    update.add_argument("update", type=Path, help="the update TOML")
    update.add_argument("--out", type=Path, required=True, help="folder for the results and the summary")
    update.set_defaults(handler=run_update)
    sheet = commands.add_parser(
        "sheet",
        help="a multiplicity sheet of H: seeds as rows, one axis of choices at a time as columns",
        description="Vary one choice at a time around the default (learning rate, batch size, model class, "
        "training subset, ...) over several seeds; report every H with accuracy, Δmax per axis, Δmax^all "
        "and how far H spreads among equally accurate models. Writes sheet.md, sheet.csv, sheet.json.",
    )
    sheet.add_argument("sheet", type=Path, help="the sheet TOML (examples/experiments/digits-sheet.toml)")
    sheet.add_argument(
        "--out", type=Path, required=True, help="folder for sheet.md, sheet.csv and sheet.json"
    )
    sheet.set_defaults(handler=run_sheet)


def run_experiment(args: argparse.Namespace) -> int:
    from monoculture.research.experiment import load_experiment, run_experiment

    experiment = load_experiment(args.experiment)
    run_experiment(experiment, args.out, progress=lambda line: print(line, flush=True))
    print((args.out / "summary.md").read_text(encoding="utf-8"))
    print(f"wrote {args.out / 'summary.json'} and {args.out / 'summary.md'}")
    return 0


def run_sheet(args: argparse.Namespace) -> int:
    from monoculture.research.sheet import load_sheet, run_sheet

    run_sheet(load_sheet(args.sheet), args.out, progress=lambda line: print(line, flush=True))
    print((args.out / "sheet.md").read_text(encoding="utf-8"))
    print(f"wrote {args.out / 'sheet.md'}, sheet.csv and sheet.json")
    return 0


def run_update(args: argparse.Namespace) -> int:
    from monoculture.research.update import load_update, run_update

    run_update(load_update(args.update), args.out, progress=lambda line: print(line, flush=True))
    print((args.out / "summary.md").read_text(encoding="utf-8"))
    print(f"wrote {args.out / 'summary.json'} and {args.out / 'summary.md'}")
    return 0
