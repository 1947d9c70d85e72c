"""Revocation and renewal with real processes and real certificates: the coordinator and the
company daemons as `monoculture` processes over mTLS on 127.0.0.1, the CRL a file the auditor's
CA publishes (`monoculture.pki.revoke`, as `certs revoke` does) into the folder their
[tls] crl_file names, while they run."""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from conftest import assert_same_integers, example
from pki_helpers import LocalPki

from monoculture.analysis.metrics import result_dict
from monoculture.analysis.table import plaintext_table
from monoculture.auditor import AuditorClient
from monoculture.core.dataset import InputSpec, load_records
from monoculture.core.errors import MonocultureError, RoundFailed
from monoculture.core.identity import Identity, Role, create_ca, create_request, read_certified_key, read_pem
from monoculture.core.revocation import build_crl, certificate_serial
from monoculture.pki import issue_certificate, publish_crl, revocation_targets, revoke, sign_certificate
from monoculture.research.simulate import CompanyInput, start_company, start_coordinator
from monoculture.transport import TlsFiles, channel, presented_certificate
from monoculture.v1 import monoculture_pb2 as pb
from monoculture.v1 import monoculture_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e

COMPANIES = ["google", "microsoft", "ibm"]


class Deployment:
    """A CA folder with a published (empty) CRL that every party's [tls] crl_file names."""

    def __init__(self, folder: Path, companies: list[str] = COMPANIES) -> None:
        self.pki = LocalPki(folder / "certs", companies)
        self.folder = folder
        self.crl = publish_crl(self.pki.folder).path

    def company(self, name: str) -> TlsFiles:
        return replace(self.pki.company(name), crl_file=self.crl)

    def coordinator(self) -> TlsFiles:
        return replace(self.pki.coordinator(), crl_file=self.crl)

    def revoke(self, identity: Identity) -> None:
        revoke(self.pki.folder, revocation_targets(self.pki.folder, identity=identity))

    def start_company(
        self, name: str, address: str, stack: ExitStack, rounds: int = 1
    ) -> subprocess.Popen[bytes]:
        spec = CompanyInput(name, InputSpec(example("digit", name)))
        return start_company(spec, address, self.folder, stack, rounds=rounds, tls=self.company(name))

    def log(self, who: str) -> str:
        path = self.folder / ("coordinator.log" if who == "coordinator" else f"client-{who}.log")
        return path.read_text(errors="replace") if path.exists() else ""


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:.0f} s: {what}")
        time.sleep(0.2)


def refusal(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details() or ""


def plaintext(companies: list[str]) -> dict:
    outcomes = [load_records(InputSpec(example("digit", c))).as_mapping() for c in companies]
    return result_dict(plaintext_table(companies, outcomes))


def test_a_company_revoked_while_the_coordinator_runs_is_refused_and_cannot_join(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path)
    with ExitStack() as stack:
        address = start_coordinator(tmp_path, stack, tls=deployment.coordinator())
        stubs = {
            name: pb_grpc.CompanyServiceStub(stack.enter_context(channel(address, deployment.company(name))))
            for name in ("google", "ibm")
        }

        def poll(name: str) -> Callable[[], object]:
            return lambda: stubs[name].PollWork(pb.PollWorkRequest(company=name, wait_seconds=0), timeout=20)

        assert poll("ibm")().WhichOneof("work") is None  # type: ignore[attr-defined]
        deployment.revoke(Identity(Role.COMPANY, "ibm"))  # no restart: the coordinator re-reads the file
        code, details = refusal(poll("ibm"))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert "certificate of company ibm" in details and "is revoked since" in details
        poll("google")()  # the others are served as before

        daemons = {name: deployment.start_company(name, address, stack) for name in COMPANIES}
        assert daemons["ibm"].wait(timeout=120) == 2
        assert "the coordinator refuses this daemon" in deployment.log("ibm")
        assert "is revoked" in deployment.log("ibm")
        with AuditorClient(address, deployment.pki.auditor()) as auditor:
            opened = auditor.open_round(COMPANIES, deadline_seconds=4)
            with pytest.raises(RoundFailed) as failed:
                auditor.wait(opened.round_id, 120)
        assert failed.value.where == "ibm" and "ibm" in failed.value.message

        # A list that no longer verifies (forged, or another CA's): no call is served on trust.
        good = deployment.crl.read_bytes()
        deployment.crl.write_bytes(build_crl(create_ca(), [], number=99))
        code, details = refusal(poll("google"))
        assert code == grpc.StatusCode.UNAVAILABLE and "cannot check certificates" in details
        assert "not signed by this deployment's CA" in deployment.log("coordinator")  # its operator is told
        deployment.crl.write_bytes(good)
        poll("google")()

        deployment.revoke(Identity(Role.AUDITOR, "auditor"))  # the auditor's credential, as a company's
        auditor_stub = pb_grpc.AuditorServiceStub(
            stack.enter_context(channel(address, deployment.pki.auditor()))
        )
        code, details = refusal(lambda: auditor_stub.GetRoundStatus(pb.RoundRef(round_id=opened.round_id)))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "certificate of auditor auditor" in details


def test_a_daemon_refuses_a_coordinator_whose_certificate_is_revoked(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path, ["google", "microsoft"])
    with ExitStack() as stack:
        address = start_coordinator(tmp_path, stack, tls=deployment.coordinator())
        for name in ("google", "microsoft"):
            deployment.start_company(name, address, stack)
        wait_for(lambda: all("serving" in deployment.log(n) for n in ("google", "microsoft")), "daemons up")
        deployment.revoke(Identity(Role.COORDINATOR, "127.0.0.1"))  # its key was lost, say
        for name in ("google", "microsoft"):
            wait_for(
                lambda n=name: "will not talk to the coordinator" in deployment.log(n),  # type: ignore[misc]
                f"{name} refuses the coordinator",
            )
            assert f"the certificate of the coordinator at {address}" in deployment.log(name)
        with AuditorClient(address, deployment.pki.auditor()) as auditor:
            opened = auditor.open_round(["google", "microsoft"], deadline_seconds=3)
            with pytest.raises(RoundFailed, match="enrol"):  # neither daemon asked for work
                auditor.wait(opened.round_id, 120)


def test_a_stale_or_forged_crl_is_refused_at_start(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path, ["google"])
    ca = deployment.pki.folder / "ca.pem"
    stale = build_crl(
        read_certified_key(ca, deployment.pki.folder / "ca.key"), [], number=5,
        now=dt.datetime.now(dt.UTC) - dt.timedelta(days=31),
    )  # fmt: skip
    deployment.crl.write_bytes(stale)
    with ExitStack() as stack, pytest.raises(MonocultureError, match="past its next update"):
        start_coordinator(tmp_path, stack, tls=deployment.coordinator())

    deployment.crl.write_bytes(build_crl(create_ca(), [], number=6))  # forged
    with ExitStack() as stack:
        daemon = deployment.start_company("google", "127.0.0.1:1", stack)
        assert daemon.wait(timeout=120) == 2
    log = deployment.log("google")
    assert "not signed by this deployment's CA" in log and str(deployment.crl) in log
    assert "Traceback" not in log


def _renew_company(folder: Path, name: str) -> int:
    """The company's `certs request --renew` and the auditor's `certs sign`, then the new file
    replaces the old one in one step; returns the new serial."""
    identity = Identity(Role.COMPANY, name)
    request = folder / "renewal" / f"company-{name}.csr"
    request.parent.mkdir(exist_ok=True)
    request.write_bytes(create_request(identity, read_pem(folder / f"company-{name}.key")).request_pem)
    signed = sign_certificate(folder, request, request.with_suffix(".pem"), days=90)
    signed.cert_file.replace(folder / f"company-{name}.pem")
    return certificate_serial(read_pem(folder / f"company-{name}.pem"))


def test_renewals_during_a_round_keep_it_going_and_its_result_exact(tmp_path: Path) -> None:
    """The coordinator's certificate and google's are renewed between google's enrolment and the
    round's next phase, with no restart; google's next round enrols under the renewed certificate,
    which microsoft (pinned before the renewal) accepts: the key, and so the pin, stayed."""
    deployment = Deployment(tmp_path)
    folder = deployment.pki.folder
    expected = plaintext(COMPANIES)
    with ExitStack() as stack:
        address = start_coordinator(tmp_path, stack, tls=deployment.coordinator())
        for name in ("google", "microsoft"):
            deployment.start_company(name, address, stack, rounds=2)
        with AuditorClient(address, deployment.pki.auditor()) as auditor:
            first = auditor.open_round(COMPANIES)
            wait_for(
                lambda: all(
                    f"{n} enrolled" in deployment.log("coordinator") for n in ("google", "microsoft")
                ),
                "google and microsoft enrolled",
            )
            old = certificate_serial(read_pem(folder / "company-google.pem"))
            new = _renew_company(folder, "google")
            issue_certificate(folder, Identity(Role.COORDINATOR, "127.0.0.1"), host="127.0.0.1")
            coordinator_serial = certificate_serial(read_pem(folder / "coordinator.pem"))
            wait_for(lambda: "renewed certificate taken up" in deployment.log("google"), "google renews")
            served = presented_certificate(address, deployment.pki.auditor())
            assert certificate_serial(served) == coordinator_serial  # served without a restart

            deployment.start_company("ibm", address, stack, rounds=2)
            auditor.wait(first.round_id, 300)
            assert_same_integers(auditor.result(first.round_id), expected)
            assert f"company google now presents the certificate with serial {new:x} (was {old:x})" in (
                deployment.log("coordinator")
            )
            second = auditor.open_round(COMPANIES)
            auditor.wait(second.round_id, 300)
            assert_same_integers(auditor.result(second.round_id), expected)
