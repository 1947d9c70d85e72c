"""`monoculture simulate`: a real multi-party round on this machine."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from monoculture.analysis.metrics import result_dict
from monoculture.cli.common import (
    Commands,
    add_group_options,
    add_input_options,
    add_insecure,
    add_release_options,
    declared_groups,
    input_specs,
    release_policy,
    warn_idle_options,
    write_result,
)
from monoculture.core.dataset import InputSpec
from monoculture.core.errors import ConfigError
from monoculture.core.messages import Status
from monoculture.report import format_summary, format_truth_comparison


def _rates_argument(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected rates like 0.2 or 0.1,0.3, got {value!r}") from None


def add_parser(commands: Commands) -> None:
    sim = commands.add_parser("simulate", help="run a real multi-party round on this machine")
    add_input_options(sim)
    sim.add_argument("--parties", type=int, help="synthetic: number of companies")
    sim.add_argument("--individuals", type=int, help="synthetic: population size")
    sim.add_argument("--seed", type=int, help="synthetic: seed of the population (not of any key)")
    sim.add_argument(
        "--overlap", type=float, default=0.8,
        help="synthetic: share of the population every company holds (default 0.8)",
    )  # fmt: skip
    sim.add_argument(
        "--failure-rate", type=_rates_argument, default=(0.2,),
        help="synthetic: one rate, or one per company comma-separated (default 0.2)",
    )  # fmt: skip
    sim.add_argument(
        "--correlation", type=float, default=0.3,
        help="synthetic: share of individuals failed jointly (0 = independent, H ~ 1)",
    )  # fmt: skip
    sim.add_argument("--workdir", type=Path, help="keep configs, certificates and daemon logs here")
    sim.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the round")
    add_insecure(sim)
    add_release_options(sim)
    sim.add_argument(
        "--dummy-epsilon", type=float, default=0.0,
        help="DP dummies on the sizes the coordinator sees (list sizes, two-company overlaps); 0 = none",
    )  # fmt: skip
    sim.add_argument(
        "--rerandomise", action="store_true",
        help="re-randomised failure tags: no final tag can be followed back to its owner's id "
        "(about 4 times the wall time; docs/USAGE.md, 'monoculture bench')",
    )  # fmt: skip
    add_group_options(
        sim,
        labels_help="the group labels the round declares, in order "
        "(default: those of the --groups-from company's file, sorted)",
    )
    sim.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from monoculture.research.simulate import CompanyInput, run_round
    from monoculture.research.synthetic import SyntheticSpec, generate

    synthetic = args.parties is not None or args.individuals is not None
    if synthetic == bool(args.company):
        raise ConfigError("give either --company NAME=PATH (two or more) or --parties K --individuals N")
    policy = release_policy(args)
    if not 0 <= args.dummy_epsilon < float("inf"):
        raise ConfigError(f"--dummy-epsilon must be 0 (no dummies) or more, got {args.dummy_epsilon:g}")
    groups_from = ""
    labels: tuple[str, ...] = ()
    if synthetic and (args.groups_from or args.group_column):
        raise ConfigError("groups (--groups-from, --group-column) need --company NAME=PATH inputs")
    if not synthetic:
        groups_from, labels = declared_groups(args, input_specs(args))
    with tempfile.TemporaryDirectory(prefix="monoculture-") as tmp:
        workdir = args.workdir or Path(tmp)
        truth = None
        if synthetic:
            if args.parties is None or args.individuals is None:
                raise ConfigError("synthetic runs need both --parties and --individuals")
            spec = SyntheticSpec(
                args.parties, args.individuals, args.seed, args.overlap, args.failure_rate, args.correlation
            )
            population = generate(spec, workdir / "data")
            companies = [
                CompanyInput(n, InputSpec(p))
                for n, p in zip(population.companies, population.files, strict=True)
            ]
            truth = (population.truth, spec.model_homogenization())
        else:
            companies = [CompanyInput(name, spec) for name, spec in input_specs(args)]
            if len(companies) < 2:
                raise ConfigError("a round needs at least two --company NAME=PATH")
        warn_idle_options([c.name for c in companies], rerandomise=args.rerandomise)
        show, done = _progress_display([c.name for c in companies], workdir)
        try:
            run = run_round(
                companies, workdir, timeout=args.timeout, on_status=show, release=policy,
                insecure=args.insecure, groups_from=groups_from, group_labels=labels,
                dummy_epsilon=args.dummy_epsilon, rerandomise=args.rerandomise,
            )  # fmt: skip
        finally:
            done()
    print(format_summary(run.result))
    if truth is not None and not run.result.get("suppressed"):
        print(format_truth_comparison(run.result, result_dict(truth[0]), truth[1]))
    write_result(run.result, args.out)
    return 0


def _progress_display(
    companies: list[str], workdir: Path
) -> tuple[Callable[[Status], None], Callable[[], None]]:
    """On a terminal: bars for the round and for each company's current step (drawn from the
    daemons' progress files, monoculture/progress.py); elsewhere, a line per change of phase.
    Returns the status callback and what closes the display."""
    from monoculture.progress import PROGRESS_FILE, ProgressBoard, stderr_is_terminal
    from monoculture.research.simulate import company_state_dir

    if not stderr_is_terminal():
        return _print_progress(), lambda: None
    board = ProgressBoard([(name, company_state_dir(workdir, name) / PROGRESS_FILE) for name in companies])

    def show(status: Status) -> None:
        board.show(str(status.phase), status.hops_done, status.hops_total)

    return show, board.close


def _print_progress() -> Callable[[Status], None]:
    last: list[str] = []

    def show(status: Status) -> None:
        line = f"round {status.round_id}: {status.phase} ({status.hops_done}/{status.hops_total} list hops)"
        if not last or last[-1] != line:
            print(line, file=sys.stderr, flush=True)
            last.append(line)

    return show
