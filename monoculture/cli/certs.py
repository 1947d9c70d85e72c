"""`monoculture certs init|issue`: the auditor's CA and the parties' certificates."""

from __future__ import annotations

import argparse

from monoculture.cli.common import Commands, add_certs_folder


def add_parser(commands: Commands) -> None:
    certs = commands.add_parser("certs", help="the auditor's certificates (mTLS identities)")
    actions = certs.add_subparsers(dest="action", required=True)
    init = actions.add_parser("init", help="create the deployment's CA")
    issue = actions.add_parser("issue", help="issue a certificate")
    for sub in (init, issue):
        add_certs_folder(sub, "--dir", "the PKI folder (env MONOCULTURE_CERTS; default ./certs)")
        sub.add_argument("--days", type=int, default=365, help="validity in days")
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    init.set_defaults(handler=init_ca)
    who = issue.add_mutually_exclusive_group(required=True)
    who.add_argument("--company", help="a company's client certificate")
    who.add_argument("--coordinator", metavar="HOST", help="the coordinator's server certificate")
    who.add_argument(
        "--auditor", nargs="?", const="auditor", metavar="NAME",
        help="the auditor's client certificate (round administration)",
    )  # fmt: skip
    issue.set_defaults(handler=issue_certificate)


def init_ca(args: argparse.Namespace) -> int:
    from monoculture.pki import init_ca as make_ca

    path = make_ca(args.dir, args.days, args.force)
    print(f"CA written to {path} (key beside it, mode 0600: keep it offline)")
    return 0


def issue_certificate(args: argparse.Namespace) -> int:
    from monoculture.core.identity import Identity, Role
    from monoculture.pki import issue_certificate as issue

    if args.company:
        identity, host = Identity(Role.COMPANY, args.company), None
    elif args.coordinator:
        identity, host = Identity(Role.COORDINATOR, args.coordinator), args.coordinator
    else:
        identity, host = Identity(Role.AUDITOR, args.auditor), None
    files = issue(args.dir, identity, host=host, days=args.days)
    print(f"{identity}: certificate {files.cert_file}, key {files.key_file}; CA {files.ca_file}")
    return 0
