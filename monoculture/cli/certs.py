"""`monoculture certs`: the auditor's CA and the parties' certificates.

init / issue             the auditor's CA; `issue` makes a party's key too (one-machine runs, tests)
request / sign           a deployment: a company makes its key and a CSR, the auditor signs the CSR
fingerprint              `sha256:HEX` of a certificate's key, which the companies pin (`[peers]`)
revoke / crl             the auditor: revoke a lost key's certificate; (re-)publish the signed CRL
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from monoculture.cli.common import Commands, add_certs_folder

if TYPE_CHECKING:
    from monoculture.pki import PublishedCrl


def positive_days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        days = 0
    if days < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of days >= 1, got {value!r}")
    return days


def add_parser(commands: Commands) -> None:
    certs = commands.add_parser("certs", help="the auditor's certificates (mTLS identities)")
    actions = certs.add_subparsers(dest="action", required=True)
    init = actions.add_parser("init", help="create the deployment's CA")
    issue = actions.add_parser("issue", help="issue a certificate and its key (one-machine runs, tests)")
    request = actions.add_parser(
        "request", help="a company: make its key and a certificate request (CSR) for the auditor"
    )
    sign = actions.add_parser("sign", help="the auditor: sign a company's certificate request")
    fingerprint = actions.add_parser(
        "fingerprint", help="print the sha256 fingerprint of a certificate's public key (for [peers])"
    )
    revoke = actions.add_parser("revoke", help="the auditor: revoke certificates and publish the CRL")
    crl = actions.add_parser("crl", help="the auditor: publish the CRL again (before its next update)")
    for sub in (init, issue, sign):
        add_certs_folder(sub, "--dir", "the CA's folder (env MONOCULTURE_CERTS; default ./certs)")
        sub.add_argument("--days", type=positive_days, default=365, help="validity in days")
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    init.set_defaults(handler=init_ca)
    who = issue.add_mutually_exclusive_group(required=True)
    who.add_argument("--company", help="a company's client certificate")
    who.add_argument("--coordinator", metavar="HOST", help="the coordinator's server certificate")
    who.add_argument(
        "--auditor", nargs="?", const="auditor", metavar="NAME",
        help="the auditor's client certificate (round administration)",
    )  # fmt: skip
    issue.add_argument(
        "--host", action="append", default=[], metavar="NAME",
        help="with --coordinator: one more DNS name or IP address it is dialled by (repeatable)",
    )  # fmt: skip
    issue.set_defaults(handler=issue_certificate)

    add_certs_folder(
        request, "--dir", "the company's own folder for its key (env MONOCULTURE_CERTS; default ./certs)"
    )
    request.add_argument("--company", required=True, metavar="NAME", help="this company's name")
    request.add_argument("--force", action="store_true", help="replace an existing key")
    request.add_argument(
        "--renew", action="store_true",
        help="a request for the key already there (a renewal: the fingerprint peers pin stays)",
    )  # fmt: skip
    request.set_defaults(handler=request_certificate)

    sign.add_argument("request", type=Path, metavar="REQUEST.csr", help="the company's request")
    sign.add_argument(
        "--out",
        type=Path,
        metavar="CERT.pem",
        help="where to write it (default: company-NAME.pem beside the CSR)",
    )
    sign.add_argument(
        "--rotate", action="store_true",
        help="sign although the name holds a valid certificate with another key (a lost or rotated key; "
        "its peers must pin the new fingerprint)",
    )  # fmt: skip
    sign.set_defaults(handler=sign_request)

    fingerprint.add_argument("certificate", type=Path, metavar="CERT.pem")
    fingerprint.set_defaults(handler=print_fingerprint)
    _add_revocation_parsers(revoke, crl)


# core.revocation's DEFAULT_CRL_DAYS and REASONS, here without loading cryptography for --help
# (tests/test_revocation.py checks they agree).
DEFAULT_CRL_DAYS = 30
REASONS = ("key-compromise", "superseded", "cessation-of-operation", "unspecified")


def _add_revocation_parsers(revoke: argparse.ArgumentParser, crl: argparse.ArgumentParser) -> None:
    for sub in (revoke, crl):
        add_certs_folder(sub, "--dir", "the CA's folder (env MONOCULTURE_CERTS; default ./certs)")
        sub.add_argument(
            "--days", type=positive_days, default=DEFAULT_CRL_DAYS,
            help=f"the CRL's validity: publish it again before then (default {DEFAULT_CRL_DAYS})",
        )  # fmt: skip
        sub.add_argument(
            "--out", type=Path, metavar="CRL.pem", help="where to write it (default DIR/crl.pem)"
        )
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("company", nargs="?", metavar="NAME", help="every valid certificate of company NAME")
    which.add_argument("--coordinator", metavar="HOST", help="the coordinator's certificates for HOST")
    which.add_argument("--auditor", metavar="NAME", help="the auditor's certificates")
    which.add_argument("--serial", metavar="HEX", help="the certificate with this serial number")
    which.add_argument("--fingerprint", metavar="sha256:HEX", help="every certificate of this key")
    which.add_argument("--certificate", type=Path, metavar="CERT.pem", help="the certificate in this file")
    revoke.add_argument(
        "--reason", choices=list(REASONS), default="key-compromise", help="recorded in the CRL"
    )
    revoke.set_defaults(handler=revoke_certificates)
    crl.set_defaults(handler=publish_crl)


def init_ca(args: argparse.Namespace) -> int:
    from monoculture.pki import init_ca as make_ca

    path = make_ca(args.dir, args.days, args.force)
    print(f"CA written to {path} (key beside it, mode 0600: keep it offline)")
    return 0


def issue_certificate(args: argparse.Namespace) -> int:
    from monoculture.core.errors import ConfigError
    from monoculture.core.identity import Identity, Role
    from monoculture.pki import issue_certificate as issue

    if args.host and not args.coordinator:
        raise ConfigError(
            "--host adds a host name to a coordinator certificate only",
            hint="give it with --coordinator HOST; company and auditor certificates name no host",
        )
    if args.company:
        identity, host = Identity(Role.COMPANY, args.company), None
    elif args.coordinator:
        identity, host = Identity(Role.COORDINATOR, args.coordinator), args.coordinator
    else:
        identity, host = Identity(Role.AUDITOR, args.auditor), None
    files = issue(args.dir, identity, host=host, days=args.days, more_hosts=args.host)
    print(f"{identity}: certificate {files.cert_file}, key {files.key_file}; CA {files.ca_file}")
    return 0


def request_certificate(args: argparse.Namespace) -> int:
    from monoculture.pki import request_certificate as request

    files = request(args.dir, args.company, args.force, renew=args.renew)
    print(f"key:         {files.key_file} (mode 0600: it never leaves this machine)")
    print(f"request:     {files.request_file}")
    print(f"fingerprint: {files.fingerprint}")
    print(
        f"next: send {files.request_file.name} to the auditor, who runs\n"
        f"  monoculture certs sign --dir CA_DIR {files.request_file.name}\n"
        f"and returns company-{args.company}.pem and ca.pem: put them in {files.key_file.parent}.\n"
        f"`monoculture certs fingerprint company-{args.company}.pem` must then print the\n"
        f"fingerprint above; give it to your peers for their [peers] section."
    )
    return 0


def sign_request(args: argparse.Namespace) -> int:
    from monoculture.pki import sign_certificate

    signed = sign_certificate(args.dir, args.request, args.out, args.days, rotate=args.rotate)
    print(f"certificate: {signed.cert_file}")
    print(f"identity:    {signed.identity}")
    print(f"fingerprint: {signed.fingerprint}")
    print(
        f"next: return {signed.cert_file.name} and ca.pem to {signed.identity.name}; it checks the\n"
        f"fingerprint against the one `certs request` printed, and its peers pin it in [peers]."
    )
    return 0


def print_fingerprint(args: argparse.Namespace) -> int:
    from monoculture.pki import fingerprint

    print(fingerprint(args.certificate))
    return 0


def _serial(value: str) -> int:
    from monoculture.core.errors import ConfigError

    try:
        return int(value.lower().removeprefix("0x").replace(":", ""), 16)
    except ValueError:
        raise ConfigError(f"--serial {value!r} is not a hexadecimal serial number") from None


def revoke_certificates(args: argparse.Namespace) -> int:
    from monoculture.core.identity import Identity, Role
    from monoculture.pki import revocation_targets, revoke

    identity = None
    if args.company:
        identity = Identity(Role.COMPANY, args.company)
    elif args.coordinator:
        identity = Identity(Role.COORDINATOR, args.coordinator)
    elif args.auditor:
        identity = Identity(Role.AUDITOR, args.auditor)
    targets = revocation_targets(
        args.dir, identity=identity, serial=_serial(args.serial) if args.serial else None,
        fingerprint_=args.fingerprint, certificate=args.certificate,
    )  # fmt: skip
    done = revoke(args.dir, targets, args.reason, args.days, args.out)
    for cert in done.newly:
        print(f"revoked:     {cert.identity}, serial {cert.serial:x} ({args.reason})")
    for cert in done.already:
        print(f"already:     {cert.identity}, serial {cert.serial:x} (revoked before)")
    _print_crl(done.crl)
    return 0


def publish_crl(args: argparse.Namespace) -> int:
    from monoculture.pki import publish_crl as publish

    _print_crl(publish(args.dir, args.days, args.out))
    return 0


def _print_crl(crl: PublishedCrl) -> None:
    print(f"CRL:         {crl.path} (number {crl.number}, {crl.revoked} revoked)")
    print(f"next update: {crl.next_update:%Y-%m-%d %H:%M} UTC")
    print(
        f"next: copy {crl.path.name} to the coordinator and to every company, where [tls] crl_file names\n"
        "it (replace the file in one step, e.g. copy beside it and `mv`); they re-read it at once.\n"
        f"Publish it again with `monoculture certs crl` before {crl.next_update:%Y-%m-%d}: past its next\n"
        "update, every party refuses to go on."
    )
