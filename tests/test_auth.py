"""Authentication against the real coordinator daemon (issue 3, Must show 1).

Every refused call gets a clear status, and a refused party learns nothing:
a company asking about a round it is not on gets the very answer it would get
for a round that does not exist.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import ExitStack

import grpc
import pytest
from pki_helpers import LocalPki

from monoculture.core.identity import CertifiedKey, Identity, Role, create_ca, issue, read_certified_key
from monoculture.research.simulate import start_coordinator
from monoculture.transport import TlsFiles
from monoculture.v1 import monoculture_pb2 as pb
from monoculture.v1 import monoculture_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e


def _channel(address: str, ca: bytes, cert: CertifiedKey | None) -> grpc.Channel:
    if cert is None:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca)
    else:
        credentials = grpc.ssl_channel_credentials(ca, cert.private_key_pem, cert.certificate_pem)
    return grpc.secure_channel(address, credentials)


def _load(files: TlsFiles) -> CertifiedKey:
    return read_certified_key(files.cert_file, files.key_file)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    folder = tmp_path_factory.mktemp("auth")
    pki = LocalPki(folder / "certs", ["google", "microsoft", "outsider"])
    ca = read_certified_key(folder / "certs" / "ca.pem", folder / "certs" / "ca.key")
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    with ExitStack() as stack:
        address = start_coordinator(folder, stack, tls=pki.coordinator())
        ca_pem = ca.certificate_pem
        auditor = pb_grpc.AuditorServiceStub(_channel(address, ca_pem, _load(pki.auditor())))
        round_id = auditor.OpenRound(pb.OpenRoundRequest(companies=["google", "microsoft"])).round_id
        yield {
            "address": address,
            "ca": ca_pem,
            "round_id": round_id,
            "google": _load(pki.company("google")),
            "outsider": _load(pki.company("outsider")),
            "auditor": _load(pki.auditor()),
            "expired": issue(ca, Identity(Role.COMPANY, "google"), days=1, not_before=long_ago),
            "foreign": issue(create_ca("another CA"), Identity(Role.COMPANY, "google")),
        }


def _company(deployment: dict, who: str | None) -> pb_grpc.CompanyServiceStub:
    cert = deployment[who] if who else None
    return pb_grpc.CompanyServiceStub(_channel(deployment["address"], deployment["ca"], cert))


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details() or ""


def _poll(stub: pb_grpc.CompanyServiceStub, company: str = "google"):
    return lambda: stub.PollWork(pb.PollWorkRequest(company=company, wait_seconds=0), timeout=10)


@pytest.mark.parametrize("who", [None, "foreign", "expired"])
def test_handshake_refuses_missing_foreign_and_expired_certificates(
    deployment: dict, who: str | None
) -> None:
    code, details = _code(_poll(_company(deployment, who)))
    assert code == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails: no call reaches a servicer
    assert deployment["round_id"] not in details


def test_the_genuine_company_gets_its_work(deployment: dict) -> None:
    response = _poll(_company(deployment, "google"))()
    assert response.WhichOneof("work") == "join_round"
    assert response.join_round.round_id == deployment["round_id"]


def test_a_company_cannot_act_as_another(deployment: dict) -> None:
    stub = _company(deployment, "google")
    code, details = _code(_poll(stub, company="microsoft"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "certificate names company google; the request acts as microsoft" in details
    request = pb.EnrollRequest(round_id=deployment["round_id"], company="microsoft", list_size=5)
    assert _code(lambda: stub.Enroll(request))[0] == grpc.StatusCode.PERMISSION_DENIED
    chunk = pb.ListChunk(round_id=deployment["round_id"], sender="microsoft", list_owner="microsoft")
    assert _code(lambda: stub.UploadList(iter([chunk])))[0] == grpc.StatusCode.PERMISSION_DENIED


def test_a_company_off_the_roster_learns_nothing(deployment: dict) -> None:
    stub = _company(deployment, "outsider")
    assert _poll(stub, "outsider")().WhichOneof("work") is None  # no work, no round named
    for round_id in (deployment["round_id"], "r-does-not-exist"):
        request = pb.CompanyStatusRequest(round_id=round_id, company="outsider")
        code, details = _code(lambda r=request: stub.GetStatus(r))
        assert code == grpc.StatusCode.NOT_FOUND
        assert details == f"unknown round {round_id!r}"
        download = pb.DownloadListRequest(round_id=round_id, company="outsider", list_owner="google", hop=0)
        assert _code(lambda d=download: list(stub.DownloadList(d)))[0] == grpc.StatusCode.NOT_FOUND


def test_a_company_cannot_administer_rounds(deployment: dict) -> None:
    cert = deployment["google"]
    stub = pb_grpc.AuditorServiceStub(_channel(deployment["address"], deployment["ca"], cert))
    for call in (
        lambda: stub.OpenRound(pb.OpenRoundRequest(companies=["google", "microsoft"])),
        lambda: stub.GetRoundStatus(pb.RoundRef(round_id=deployment["round_id"])),
        lambda: stub.GetRoundResult(pb.RoundRef(round_id=deployment["round_id"])),
    ):
        code, details = _code(call)
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert "needs the auditor's credential" in details


def test_the_auditor_cannot_act_as_a_company(deployment: dict) -> None:
    code, details = _code(_poll(_company(deployment, "auditor")))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "may not act as a company" in details


def test_the_auditor_administers(deployment: dict) -> None:
    stub = pb_grpc.AuditorServiceStub(
        _channel(deployment["address"], deployment["ca"], deployment["auditor"])
    )
    status = stub.GetRoundStatus(pb.RoundRef(round_id=deployment["round_id"]))
    assert status.phase in (pb.ROUND_PHASE_OPEN, pb.ROUND_PHASE_FAILED) and list(status.companies) == [
        "google",
        "microsoft",
    ]
