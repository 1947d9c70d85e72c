"""`monoculture coordinator serve` and `monoculture client run`: the two daemons."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from monoculture.cli.common import Commands, add_insecure
from monoculture.memory import return_freed_buffers

if TYPE_CHECKING:  # gRPC is imported when a daemon starts, not for --help
    from monoculture.transport import TlsFiles


def add_parsers(commands: Commands) -> None:
    coordinator = commands.add_parser("coordinator", help="the auditor's coordinator daemon")
    serve = coordinator.add_subparsers(dest="action", required=True).add_parser(
        "serve", help="run the coordinator"
    )
    serve.add_argument("--config", type=Path, required=True, help="TOML file (deploy/coordinator.toml)")
    add_insecure(serve)
    serve.set_defaults(handler=serve_coordinator)

    client = commands.add_parser("client", help="a company's daemon")
    run = client.add_subparsers(dest="action", required=True).add_parser("run", help="run the company daemon")
    run.add_argument("--config", type=Path, required=True, help="TOML file (deploy/client-*.toml)")
    add_insecure(run)
    run.set_defaults(handler=run_client)


def _warn_expiry(tls: TlsFiles | None) -> None:
    """Say, at start, when this party's certificate expires within 30 days."""
    if tls is None:
        return
    from monoculture.core.identity import expiry_warning, read_pem

    warning = expiry_warning(read_pem(tls.cert_file))
    if warning is not None:
        logging.getLogger("monoculture").warning("%s: %s", tls.cert_file, warning)


def serve_coordinator(args: argparse.Namespace) -> int:
    from monoculture.coordinator.config import load_coordinator_config
    from monoculture.coordinator.server import serve

    return_freed_buffers()  # a long-lived daemon: lists freed must not stay resident
    config = load_coordinator_config(args.config, insecure=args.insecure)
    _warn_expiry(config.tls)
    return serve(config)


def run_client(args: argparse.Namespace) -> int:
    from monoculture.client.config import load_client_config
    from monoculture.client.daemon import CompanyDaemon

    return_freed_buffers()
    config = load_client_config(args.config, insecure=args.insecure)
    _warn_expiry(config.tls)
    return CompanyDaemon(config).run()
