"""`monoculture round open|status|result|budget|history|compare|list|cancel`: round administration by
the auditor."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from monoculture.cli.common import (
    Commands,
    add_certs_folder,
    add_group_options,
    add_insecure,
    warn_idle_options,
    write_result,
)
from monoculture.core.errors import ConfigError

if TYPE_CHECKING:  # gRPC is imported when a command calls the coordinator, not for --help
    from monoculture.auditor import AuditorClient


def add_parser(commands: Commands) -> None:
    round_parser = commands.add_parser("round", help="round administration (the auditor)")
    actions = round_parser.add_subparsers(dest="action", required=True)
    handlers: dict[str, tuple[str, Callable[[AuditorClient, argparse.Namespace], int]]] = {
        "open": ("open a round", _open),
        "status": ("a round's phase and progress", _status),
        "result": ("a round's result JSON", _result),
        "budget": ("the privacy budget a roster has spent (the coordinator's ledger)", _budget),
        "history": ("every round of a roster, oldest first, with N, S and H of each released one", _history),
        "compare": ("the change in each company's failure rate, S and H between two rounds", _compare),
        "list": ("every round: phase, roster, when it opened and ended", _list),
        "cancel": ("end a round in flight (it fails naming the auditor; companies forget its keys)", _cancel),
    }
    for name, (text, handler) in handlers.items():
        sub = actions.add_parser(name, help=text)
        sub.add_argument(
            "--coordinator", default=os.environ.get("MONOCULTURE_COORDINATOR", "127.0.0.1:50051"),
            help="coordinator address (env MONOCULTURE_COORDINATOR)",
        )  # fmt: skip
        add_certs_folder(
            sub, "--certs", "folder with ca.pem, auditor.pem and auditor.key (env MONOCULTURE_CERTS)"
        )
        add_insecure(sub)
        sub.set_defaults(handler=_with_auditor(handler))
    open_parser, status_parser, result_parser, budget_parser, history_parser, compare_parser = (
        actions.choices[n] for n in list(handlers)[:6]
    )
    actions.choices["list"].add_argument("--json", action="store_true", help="print the rounds as JSON")
    actions.choices["cancel"].add_argument("round_id")
    history_parser.add_argument(
        "--companies", required=True, help="comma-separated company names of the roster (any order)"
    )
    history_parser.add_argument("--json", action="store_true", help="print the rounds as JSON")
    compare_parser.add_argument("old", help="the earlier round's id")
    compare_parser.add_argument("new", help="the later round's id")
    compare_parser.add_argument(
        "--upstream-improved", action="store_true",
        help="the shared upstream component improved on its own objective between the rounds: flag a "
        "company whose failure rate then rose significantly (a self-defeating improvement)",
    )  # fmt: skip
    compare_parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    open_parser.add_argument(
        "--companies", required=True, help="comma-separated company names; their order is the pattern order"
    )
    budget_parser.add_argument(
        "--companies", required=True, help="comma-separated company names of the roster (any order)"
    )
    open_parser.add_argument("--min-list-size", type=int, default=1)
    open_parser.add_argument(
        "--deadline-seconds", type=_positive_seconds, default=0.0, metavar="S",
        help="each step's deadline in this round (default: the coordinator's [limits] deadline_seconds)",
    )  # fmt: skip
    open_parser.add_argument(
        "--rerandomise", action="store_true",
        help="re-randomised failure tags: the coordinator with a list's owner can then not link the "
        "owner's ids to their final tokens (about 4 times the wall time; docs/USAGE.md, 'monoculture bench')",
    )  # fmt: skip
    add_group_options(
        open_parser,
        labels_help="the group labels the round declares, in order (required with --groups-from); "
        "a label of the groups company's data that is not among them fails the round",
    )
    for sub in (status_parser, result_parser):
        sub.add_argument("round_id")
    result_parser.add_argument("--wait", type=float, default=0.0, help="wait this many seconds for the end")
    result_parser.add_argument("--out", type=Path, help="write the result JSON here")


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {value!r}")
    return seconds


def _with_auditor(
    handler: Callable[[AuditorClient, argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from monoculture.core.identity import Identity, Role
        from monoculture.pki import tls_files

        tls = None if args.insecure else tls_files(args.certs, Identity(Role.AUDITOR, "auditor"))
        from monoculture.auditor import AuditorClient

        with AuditorClient(args.coordinator, tls) as auditor:
            return handler(auditor, args)

    return run


def _companies(args: argparse.Namespace) -> list[str]:
    return [c.strip() for c in args.companies.split(",") if c.strip()]


def _open(auditor: AuditorClient, args: argparse.Namespace) -> int:
    if args.groups_from and not args.group_labels:
        raise ConfigError(
            "--groups-from needs --group-labels a,b,c: the labels the round declares",
            hint="the auditor declares every label of the groups company's group column, in the order "
            "the result lists the groups",
        )
    if args.group_labels and not args.groups_from:
        raise ConfigError("--group-labels needs --groups-from COMPANY")
    labels = args.group_labels or ()
    warn_idle_options(_companies(args), rerandomise=args.rerandomise)
    print(
        auditor.open_round(
            _companies(args),
            args.min_list_size,
            deadline_seconds=args.deadline_seconds,
            groups_from=args.groups_from,
            group_labels=labels,
            rerandomise=args.rerandomise,
        ).round_id
    )
    return 0


def _budget(auditor: AuditorClient, args: argparse.Namespace) -> int:
    print(json.dumps(auditor.budget(_companies(args)), indent=2))
    return 0


def _status(auditor: AuditorClient, args: argparse.Namespace) -> int:
    status = auditor.status(args.round_id)
    shown = {
        "round_id": status.round_id, "phase": status.phase, "companies": list(status.companies),
        "hops_done": status.hops_done, "hops_total": status.hops_total,
        "failure_reason": status.failure_reason, "failed_party": status.failed_party,
    }  # fmt: skip
    print(json.dumps(shown, indent=2))
    return 0


def _result(auditor: AuditorClient, args: argparse.Namespace) -> int:
    if args.wait > 0:
        auditor.wait(args.round_id, args.wait)
    result = auditor.result(args.round_id)
    if args.out is None:
        print(json.dumps(result, indent=2))
    else:
        from monoculture.report import format_summary

        print(format_summary(result))
        write_result(result, args.out)
    return 0


def _history(auditor: AuditorClient, args: argparse.Namespace) -> int:
    rounds = auditor.history(_companies(args))
    if args.json:
        print(json.dumps(rounds, indent=2))
        return 0
    if not rounds:
        print(f"no rounds of the roster {', '.join(sorted(_companies(args)))}")
        return 0
    print(f"{'round':<20} {'opened (UTC)':<20} {'phase':<10} {'N':>8} {'S':>8} {'H':>8}")
    for entry in rounds:
        opened = _when(entry["opened_at"])
        result = entry["result"] or {}
        figures = [result.get(k) for k in ("shared_individuals", "systemic_failure_rate", "homogenization")]
        shown = ["" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)) for v in figures]
        line = f"{entry['round_id']:<20} {opened:<20} {entry['phase']:<10} " + " ".join(
            f"{v:>8}" for v in shown
        )
        if entry["failure_reason"]:
            line += f"  ({entry['failure_reason']})"
        print(line)
    return 0


def _compare(auditor: AuditorClient, args: argparse.Namespace) -> int:
    from monoculture.analysis.compare import compare_results
    from monoculture.report import format_comparison

    try:
        comparison = compare_results(
            auditor.result(args.old), auditor.result(args.new), args.upstream_improved
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    print(json.dumps(comparison, indent=2) if args.json else format_comparison(comparison))
    return 0


def _when(seconds: float | None) -> str:
    from datetime import UTC, datetime

    return "" if not seconds else datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _list(auditor: AuditorClient, args: argparse.Namespace) -> int:
    rounds = auditor.history([])
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "result"} for r in rounds], indent=2))
        return 0
    print(f"{'round':<20} {'phase':<10} {'opened (UTC)':<20} {'ended (UTC)':<20} roster")
    for entry in rounds:
        print(
            f"{entry['round_id']:<20} {entry['phase']:<10} {_when(entry['opened_at']):<20} "
            f"{_when(entry['ended_at']):<20} {','.join(entry['companies'])}"
        )
    return 0


def _cancel(auditor: AuditorClient, args: argparse.Namespace) -> int:
    status = auditor.cancel(args.round_id)
    print(f"round {status.round_id} {status.phase}: {status.failure_reason}")
    return 0
