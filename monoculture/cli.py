"""The `monoculture` command line (README, "Command line").

Expected failures (bad input, refused requests, failed rounds) print what is
wrong and what to do, and exit with status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monoculture import __version__
from monoculture.core.dataset import DuplicatePolicy, InputSpec, load_records
from monoculture.core.errors import ConfigError, MonocultureError
from monoculture.core.metrics import plaintext_table, result_dict
from monoculture.core.release import MECHANISMS, ReleasePolicy
from monoculture.memory import return_freed_buffers
from monoculture.report import format_summary, format_truth_comparison

EXIT_ERROR = 2


def _company_argument(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {value!r}")
    return name.strip(), Path(path)


def _rates_argument(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected rates like 0.2 or 0.1,0.3, got {value!r}") from None


def _add_input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--company",
        action="append",
        type=_company_argument,
        default=[],
        metavar="NAME=PATH",
        help="a company and its CSV or Parquet file (repeat)",
    )
    parser.add_argument("--id-column", default="id", help="column of ids (default: id)")
    parser.add_argument(
        "--failure-column",
        default="failed",
        help="column of failure indicators, 0/1 or true/false (default: failed)",
    )
    parser.add_argument("--format", default="auto", choices=["auto", "csv", "parquet"])
    parser.add_argument(
        "--duplicates",
        default=DuplicatePolicy.REFUSE.value,
        choices=[p.value for p in DuplicatePolicy],
        help="what to do with repeated ids (default: refuse; see README)",
    )
    parser.add_argument("--out", type=Path, help="write the result JSON here")


def _input_specs(args: argparse.Namespace) -> list[tuple[str, InputSpec]]:
    return [
        (
            name,
            InputSpec(
                path=path,
                id_column=args.id_column,
                failure_column=args.failure_column,
                file_format=args.format,
                duplicates=DuplicatePolicy(args.duplicates),
            ),
        )
        for name, path in args.company
    ]


def _add_insecure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext gRPC without authentication; loopback only (loudly warned)",
    )


def _add_release_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--min-shared",
        type=int,
        default=0,
        help="release: publish nothing below this many shared individuals",
    )
    parser.add_argument(
        "--min-cell-count",
        type=int,
        default=0,
        help="release: withhold pattern cells with fewer individuals (and complements)",
    )
    parser.add_argument(
        "--dp-mechanism",
        default="none",
        choices=list(MECHANISMS),
        help="release: differential privacy on the pattern counts",
    )
    parser.add_argument("--dp-epsilon", type=float, default=0.0, help="release: epsilon per round")
    parser.add_argument("--dp-delta", type=float, default=0.0, help="release: delta (discrete Gaussian)")


def _release_section(args: argparse.Namespace) -> str:
    policy = ReleasePolicy(
        args.min_shared, args.min_cell_count, args.dp_mechanism, args.dp_epsilon, args.dp_delta
    )
    policy.check()
    return (
        "[release]\n"
        f"min_shared_individuals = {policy.min_shared_individuals}\n"
        f"min_cell_count = {policy.min_cell_count}\n"
        f'dp_mechanism = "{policy.mechanism}"\n'
        f"dp_epsilon = {policy.epsilon!r}\n"
        f"dp_delta = {policy.delta!r}\n"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monoculture",
        description="Private measurement of outcome homogenization across companies.",
    )
    parser.add_argument("--version", action="version", version=f"monoculture {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("MONOCULTURE_LOG_LEVEL", "INFO"),
        help="log level of daemons and progress (env MONOCULTURE_LOG_LEVEL)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    sim = commands.add_parser("simulate", help="run a real multi-party round on this machine")
    _add_input_options(sim)
    sim.add_argument("--parties", type=int, help="synthetic: number of companies")
    sim.add_argument("--individuals", type=int, help="synthetic: population size")
    sim.add_argument("--seed", type=int, help="synthetic: seed of the population (not of any key)")
    sim.add_argument(
        "--overlap",
        type=float,
        default=0.8,
        help="synthetic: share of the population every company holds (default 0.8)",
    )
    sim.add_argument(
        "--failure-rate",
        type=_rates_argument,
        default=(0.2,),
        help="synthetic: one rate, or one per company comma-separated (default 0.2)",
    )
    sim.add_argument(
        "--correlation",
        type=float,
        default=0.3,
        help="synthetic: share of individuals failed jointly (0 = independent, H ~ 1)",
    )
    sim.add_argument("--workdir", type=Path, help="keep configs, certificates and daemon logs here")
    sim.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the round")
    _add_insecure(sim)
    _add_release_options(sim)

    coordinator = commands.add_parser("coordinator", help="the auditor's coordinator daemon")
    coordinator_commands = coordinator.add_subparsers(dest="action", required=True)
    serve = coordinator_commands.add_parser("serve", help="run the coordinator")
    serve.add_argument("--config", type=Path, required=True, help="TOML file (deploy/coordinator.toml)")
    _add_insecure(serve)

    client = commands.add_parser("client", help="a company's daemon")
    client_commands = client.add_subparsers(dest="action", required=True)
    run = client_commands.add_parser("run", help="run the company daemon")
    run.add_argument("--config", type=Path, required=True, help="TOML file (deploy/client-*.toml)")
    _add_insecure(run)

    certs = commands.add_parser("certs", help="the auditor's certificates (mTLS identities)")
    certs_commands = certs.add_subparsers(dest="action", required=True)
    for name, text in (("init", "create the deployment's CA"), ("issue", "issue a certificate")):
        sub = certs_commands.add_parser(name, help=text)
        sub.add_argument(
            "--dir",
            type=Path,
            default=Path(os.environ.get("MONOCULTURE_CERTS", "certs")),
            help="the PKI folder (env MONOCULTURE_CERTS; default ./certs)",
        )
        sub.add_argument("--days", type=int, default=365, help="validity in days")
        if name == "init":
            sub.add_argument("--force", action="store_true", help="replace an existing CA")
        else:
            who = sub.add_mutually_exclusive_group(required=True)
            who.add_argument("--company", help="a company's client certificate")
            who.add_argument("--coordinator", metavar="HOST", help="the coordinator's server certificate")
            who.add_argument(
                "--auditor",
                nargs="?",
                const="auditor",
                metavar="NAME",
                help="the auditor's client certificate (round administration)",
            )

    round_parser = commands.add_parser("round", help="round administration (the auditor)")
    round_commands = round_parser.add_subparsers(dest="action", required=True)
    default_address = os.environ.get("MONOCULTURE_COORDINATOR", "127.0.0.1:50051")
    for name, text in (
        ("open", "open a round"),
        ("status", "a round's phase and progress"),
        ("result", "a round's result JSON"),
    ):
        sub = round_commands.add_parser(name, help=text)
        sub.add_argument(
            "--coordinator",
            default=default_address,
            help="coordinator address (env MONOCULTURE_COORDINATOR)",
        )
        sub.add_argument(
            "--certs",
            type=Path,
            default=Path(os.environ.get("MONOCULTURE_CERTS", "certs")),
            help="folder with ca.pem, auditor.pem and auditor.key (env MONOCULTURE_CERTS)",
        )
        _add_insecure(sub)
        if name == "open":
            sub.add_argument(
                "--companies",
                required=True,
                help="comma-separated company names; their order is the pattern order",
            )
            sub.add_argument("--min-list-size", type=int, default=1)
        else:
            sub.add_argument("round_id")
        if name == "result":
            sub.add_argument("--wait", type=float, default=0.0, help="wait this many seconds for the end")
            sub.add_argument("--out", type=Path, help="write the result JSON here")

    bench = commands.add_parser("bench", help="time a simulated round against the EC floor")
    bench.add_argument("--parties", type=int, default=3)
    bench.add_argument("--records", type=int, default=100_000, help="records per company")
    bench.add_argument("--overlap", type=float, default=1.0)
    bench.add_argument("--seed", type=int, default=1)
    bench.add_argument(
        "--insecure", action="store_true", help="plaintext transport (to measure what mTLS costs)"
    )

    plain = commands.add_parser(
        "plaintext", help="the same result computed in the clear, from files you hold"
    )
    _add_input_options(plain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return _dispatch(args)
    except MonocultureError as exc:
        print(exc.diagnostics(), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "simulate":
        return _simulate(args)
    if args.command == "coordinator":
        from coordinator.config import load_coordinator_config
        from coordinator.server import serve

        return_freed_buffers()  # a long-lived daemon: lists freed must not stay resident
        return serve(load_coordinator_config(args.config, insecure=args.insecure))
    if args.command == "client":
        from client.config import load_client_config
        from client.daemon import CompanyDaemon

        return_freed_buffers()
        return CompanyDaemon(load_client_config(args.config, insecure=args.insecure)).run()
    if args.command == "certs":
        return _certs(args)
    if args.command == "round":
        return _round(args)
    if args.command == "bench":
        from monoculture.bench import run_bench

        return run_bench(args.parties, args.records, args.overlap, args.seed, insecure=args.insecure)
    if args.command == "plaintext":
        return _plaintext(args)
    raise ConfigError(f"unknown command {args.command}")


def _write_result(result: dict[str, Any], out: Path | None) -> None:
    if out is None:
        return
    try:
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the result ({exc.strerror})", where=str(out)) from None
    print(f"result written to {out}")


def _simulate(args: argparse.Namespace) -> int:
    from monoculture.simulate import CompanyInput, run_round
    from monoculture.synthetic import SyntheticSpec, generate

    synthetic = args.parties is not None or args.individuals is not None
    if synthetic == bool(args.company):
        raise ConfigError("give either --company NAME=PATH (two or more) or --parties K --individuals N")
    with tempfile.TemporaryDirectory(prefix="monoculture-") as tmp:
        workdir = args.workdir or Path(tmp)
        truth = None
        if synthetic:
            if args.parties is None or args.individuals is None:
                raise ConfigError("synthetic runs need both --parties and --individuals")
            spec = SyntheticSpec(
                args.parties,
                args.individuals,
                args.seed,
                args.overlap,
                args.failure_rate,
                args.correlation,
            )
            population = generate(spec, workdir / "data")
            companies = [
                CompanyInput(n, InputSpec(p))
                for n, p in zip(population.companies, population.files, strict=True)
            ]
            truth = (population.truth, spec.model_homogenization())
        else:
            companies = [CompanyInput(name, spec) for name, spec in _input_specs(args)]
            if len(companies) < 2:
                raise ConfigError("a round needs at least two --company NAME=PATH")
        run = run_round(
            companies, workdir, timeout=args.timeout, on_status=_print_progress(),
            coordinator_sections=_release_section(args), insecure=args.insecure,
        )  # fmt: skip
    print(format_summary(run.result))
    if truth is not None and not run.result.get("suppressed"):
        print(format_truth_comparison(run.result, result_dict(truth[0]), truth[1]))
    _write_result(run.result, args.out)
    return 0


def _print_progress() -> Any:
    last: list[str] = []

    def show(status: Any) -> None:
        line = f"round {status.round_id}: {status.phase} ({status.hops_done}/{status.hops_total} list hops)"
        if not last or last[-1] != line:
            print(line, file=sys.stderr, flush=True)
            last.append(line)

    return show


def _certs(args: argparse.Namespace) -> int:
    from monoculture.core.identity import Identity, Role
    from monoculture.pki import init_ca, issue_certificate

    if args.action == "init":
        path = init_ca(args.dir, args.days, args.force)
        print(f"CA written to {path} (key beside it, mode 0600: keep it offline)")
        return 0
    if args.company:
        identity, host = Identity(Role.COMPANY, args.company), None
    elif args.coordinator:
        identity, host = Identity(Role.COORDINATOR, args.coordinator), args.coordinator
    else:
        identity, host = Identity(Role.AUDITOR, args.auditor), None
    files = issue_certificate(args.dir, identity, host=host, days=args.days)
    print(f"{identity}: certificate {files.cert_file}, key {files.key_file}; CA {files.ca_file}")
    return 0


def _round(args: argparse.Namespace) -> int:
    from coordinator.admin import AuditorClient
    from monoculture.core.identity import Identity, Role
    from monoculture.pki import tls_files

    tls = None if args.insecure else tls_files(args.certs, Identity(Role.AUDITOR, "auditor"))
    with AuditorClient(args.coordinator, tls) as auditor:
        if args.action == "open":
            companies = [c.strip() for c in args.companies.split(",") if c.strip()]
            status = auditor.open_round(companies, args.min_list_size)
            print(status.round_id)
            return 0
        if args.action == "status":
            status = auditor.status(args.round_id)
            print(
                json.dumps(
                    {
                        "round_id": status.round_id,
                        "phase": status.phase,
                        "companies": list(status.companies),
                        "hops_done": status.hops_done,
                        "hops_total": status.hops_total,
                        "failure_reason": status.failure_reason,
                        "failed_party": status.failed_party,
                    },
                    indent=2,
                )
            )
            return 0
        if args.wait > 0:
            auditor.wait(args.round_id, args.wait)
        result = auditor.result(args.round_id)
    if args.out is None:
        print(json.dumps(result, indent=2))
    else:
        print(format_summary(result))
        _write_result(result, args.out)
    return 0


def _plaintext(args: argparse.Namespace) -> int:
    specs = _input_specs(args)
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
    _write_result(result, args.out)
    return 0
