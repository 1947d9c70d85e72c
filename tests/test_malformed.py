"""The catalogue of malformed inputs (issue 3, Must show 3).

Files: `tests/malformed/files/`, with the message each must produce in
`tests/malformed/files.toml` — checked by the reader, by `monoculture simulate`
and by a running company daemon. gRPC messages: sent straight to a running
coordinator (mTLS, a genuine company certificate) — oversized, truncated,
wrongly typed, invalid points, unknown round, wrong phase, wrong company,
limits. Each gets a clear error; no daemon crashes; afterwards the same
daemons complete a good round.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import grpc
import pytest
from adversarial.cheat import Cheat
from conftest import ROOT, example, write_csv
from pki_helpers import LocalPki

from monoculture.auditor import AuditorClient
from monoculture.coordinator.config import Limits
from monoculture.core.dataset import InputSpec, load_records
from monoculture.core.errors import InputError, RoundFailed
from monoculture.core.protocol import PROTOCOL_VERSION as V
from monoculture.core.psi_crypto import POINT_SIZE, TAG_SIZE, encode_points
from monoculture.core.relay import RelayKeys, RelayPeer
from monoculture.research.simulate import CompanyInput, start_company, start_coordinator
from monoculture.v1 import monoculture_pb2 as pb

FILES = ROOT / "tests" / "malformed" / "files"
CATALOGUE: dict[str, str] = tomllib.loads((ROOT / "tests" / "malformed" / "files.toml").read_text())


def test_the_catalogue_is_complete() -> None:
    assert sorted(CATALOGUE) == sorted(p.name for p in FILES.iterdir())
    assert len(CATALOGUE) >= 25


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_reader_refuses(name: str) -> None:
    with pytest.raises(InputError) as caught:
        load_records(InputSpec(FILES / name))
    assert CATALOGUE[name] in str(caught.value)
    assert name in str(caught.value)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_simulate_refuses(tmp_path: Path, name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "monoculture", "simulate", "--workdir", str(tmp_path),
         "--company", f"good={example('digit', 'google')}", "--company", f"bad={FILES / name}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert CATALOGUE[name] in done.stderr and "company bad" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "coordinator.toml").exists()


# ------------------------------------------------------------ live daemons

LIMITS = Limits(min_list_size=10, max_list_size=100000, max_chunks_per_list=50)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    folder = tmp_path_factory.mktemp("malformed")
    names = ["google", "broken-csv", "broken-parquet", "evil"]
    pki = LocalPki(folder / "certs", names)
    with ExitStack() as stack:
        address = start_coordinator(folder, stack, tls=pki.coordinator(), limits=LIMITS)
        daemons = {}
        for name, path in (
            ("google", example("digit", "google")),
            ("broken-csv", folder / "current.csv"),
            ("broken-parquet", folder / "current.parquet"),
        ):
            company = CompanyInput(name, InputSpec(path))
            daemons[name] = start_company(company, address, folder, stack, rounds=0, tls=pki.company(name))
        auditor = stack.enter_context(AuditorClient(address, pki.auditor()))
        coordinator_log = folder / "coordinator.log"
        yield {"folder": folder, "address": address, "pki": pki, "auditor": auditor, "daemons": daemons,
               "log": coordinator_log}  # fmt: skip


def _alive(live: dict) -> None:
    for name, process in live["daemons"].items():
        assert process.poll() is None, f"the daemon of {name} died"
    assert "Traceback" not in live["log"].read_text()


@pytest.mark.e2e
@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_a_running_daemon_withdraws_on_each_bad_file(live: dict, name: str) -> None:
    broken = "broken-parquet" if name.endswith(".parquet") else "broken-csv"
    shutil.copyfile(FILES / name, live["folder"] / ("current" + Path(name).suffix))
    auditor = live["auditor"]
    round_id = auditor.open_round(["google", broken]).round_id
    with pytest.raises(RoundFailed) as failed:
        auditor.wait(round_id, timeout=60)
    assert failed.value.where == broken
    log = (live["folder"] / f"client-{broken}.log").read_text()
    assert CATALOGUE[name] in log
    _alive(live)


# ------------------------------------------------------------ raw messages


class RawCompany(Cheat):
    """A company speaking the protocol by hand, to send what no daemon would."""

    def __init__(self, live: dict, name: str = "evil") -> None:
        super().__init__(live["address"], name, live["pki"].company(name))

    def raw(self, method: str, payload: bytes) -> None:
        call = self.channel.unary_unary(
            f"/monoculture.v1.CompanyService/{method}",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        call(payload, timeout=10)

    def enroll(self, join: pb.JoinRound, list_size: int = 100) -> RelayKeys:
        self.stub.Enroll(self.enrollment(join, list_size))
        return self.relay

    def confirm(self, round_id: str) -> None:
        self.stub.ConfirmKeys(self.confirmations(self.next_work("pair_keys", round_id).pair_keys))


def _code(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details() or ""


def _chunk(round_id: str, sender: str, owner: str, hop: int, size: int, points: list[bytes]) -> pb.ListChunk:
    return pb.ListChunk(round_id=round_id, sender=sender, list_owner=owner, hop=hop, chunk_index=0,
                        chunk_count=1, list_size=size, chunk_elements=len(points),
                        points=encode_points(points), tags=b"\x00" * TAG_SIZE * len(points))  # fmt: skip


def _enrol_bytes(round_id: str) -> bytes:
    return pb.EnrollRequest(round_id=round_id, company="evil", tag_public_key=b"k" * 32).SerializeToString()


MESSAGE_CASES: list[tuple[str, Callable[[RawCompany, str], object], grpc.StatusCode, str]] = [
    ("oversized", lambda c, r: c.stub.UploadList(iter([pb.ListChunk(round_id=r, sender="evil",
                                                                    points=b"x" * 5_000_000)])),
     grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
    ("truncated", lambda c, r: c.raw("Enroll", _enrol_bytes(r)[:-5]),
     grpc.StatusCode.INTERNAL, "deserializing"),
    ("garbage bytes", lambda c, r: c.raw("PollWork", b"\xff" * 4), grpc.StatusCode.INTERNAL, "deserializing"),
    ("wrong message type", lambda c, r: c.raw("Enroll", _chunk(r, "evil", "evil", 0, 1, [b"\x02" * 33])
                                                 .SerializeToString()),
     grpc.StatusCode.INVALID_ARGUMENT, "evil speaks protocol v1"),
    ("unknown round", lambda c, r: c.stub.Enroll(pb.EnrollRequest(round_id="r-0000000000000000",
                                                                  company="evil", protocol_version=V)),
     grpc.StatusCode.NOT_FOUND, "unknown round 'r-0000000000000000'"),
    ("malformed round id", lambda c, r: c.stub.Enroll(pb.EnrollRequest(round_id="../../etc", company="evil")),
     grpc.StatusCode.INVALID_ARGUMENT, "malformed round id '../../etc'"),
    ("wrong phase", lambda c, r: c.stub.UploadList(iter([_chunk(r, "evil", "evil", 0, 100, [b"\x02" * 33])])),
     grpc.StatusCode.FAILED_PRECONDITION, "this step needs RELAYING"),
    ("wrong company", lambda c, r: list(c.stub.DownloadList(pb.DownloadListRequest(
        round_id=r, company="evil", list_owner="google", hop=0))),
     grpc.StatusCode.FAILED_PRECONDITION, "needs RELAYING"),
    ("acting as another", lambda c, r: c.stub.Withdraw(pb.WithdrawRequest(round_id=r, company="google")),
     grpc.StatusCode.PERMISSION_DENIED, "acts as google"),
    ("empty upload", lambda c, r: c.stub.UploadList(iter([])), grpc.StatusCode.INVALID_ARGUMENT, "no chunks"),
    ("bad key signature", lambda c, r: c.stub.Enroll(pb.EnrollRequest(
        round_id=r, company="evil", list_size=100, relay_public_key=b"\x07" * 32, tag_public_key=b"\x07" * 32,
        signature=b"\x30\x06\x02\x01\x01\x02\x01\x01", certificate_pem=c.material.certificate_pem,
        protocol_version=V)),
     grpc.StatusCode.INVALID_ARGUMENT, "the keys of evil are not signed for this round and roster"),
    ("a v1 daemon", lambda c, r: c.stub.Enroll(pb.EnrollRequest(round_id=r, company="evil", list_size=100)),
     grpc.StatusCode.INVALID_ARGUMENT, "evil speaks protocol v1; this side speaks v3"),
]  # fmt: skip


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("label", "send", "code", "message"), MESSAGE_CASES, ids=[c[0] for c in MESSAGE_CASES]
)
def test_malformed_messages_get_a_clear_status(live: dict, label: str, send, code, message: str) -> None:
    evil = RawCompany(live)
    round_id = live["auditor"].open_round(["google", "evil"]).round_id
    got, details = _code(lambda: send(evil, round_id))
    assert got == code, details
    assert message in details
    _alive(live)
    # End the round so it does not count against the coordinator's rounds in flight.
    evil.stub.Withdraw(pb.WithdrawRequest(round_id=round_id, company="evil", reason="test over"))


@pytest.mark.e2e
def test_a_list_above_the_limit_is_refused_and_the_round_untouched(live: dict) -> None:
    evil = RawCompany(live)
    round_id = live["auditor"].open_round(["evil", "google"]).round_id
    join = evil.next_work("join_round", round_id).join_round
    got, details = _code(lambda: evil.enroll(join, 100_001))
    assert got == grpc.StatusCode.RESOURCE_EXHAUSTED and "above the limit of 100000" in details
    assert live["auditor"].status(round_id).phase == "OPEN"  # refused: nothing changed
    evil.enroll(join, 20)  # a valid enrolment is still taken
    _alive(live)
    evil.stub.Withdraw(pb.WithdrawRequest(round_id=round_id, company="evil", reason="test over"))


@pytest.mark.e2e
def test_a_list_below_the_minimum_fails_the_round(live: dict) -> None:
    evil = RawCompany(live)
    round_id = live["auditor"].open_round(["evil", "google"]).round_id
    join = evil.next_work("join_round", round_id).join_round
    got, details = _code(lambda: evil.enroll(join, 3))
    assert got == grpc.StatusCode.FAILED_PRECONDITION and "below this round's minimum of 10" in details
    assert live["auditor"].status(round_id).failed_party == "evil"
    _alive(live)


@pytest.mark.e2e
def test_invalid_curve_points_fail_the_round_naming_the_sender(live: dict) -> None:
    evil = RawCompany(live)
    round_id = live["auditor"].open_round(["evil", "google"]).round_id
    relay = evil.enroll(evil.next_work("join_round", round_id).join_round, list_size=20)
    evil.confirm(round_id)
    work = evil.next_work("blind_list", round_id).blind_list
    assert work.hop == 0 and work.receiver.company == "google"
    sealer = relay.sealer(RelayPeer.from_message(work.receiver), round_id, "evil", "evil", 0)
    bogus = [bytes([5]) + bytes([i]) * (POINT_SIZE - 1) for i in range(20)]  # 0x05: no such encoding
    evil.stub.UploadList(
        iter([evil.signer.sign(sealer.seal(_chunk(round_id, "evil", "evil", 0, 20, bogus)))])
    )
    with pytest.raises(RoundFailed) as failed:
        live["auditor"].wait(round_id, timeout=60)
    assert failed.value.where == "evil"
    reason = live["auditor"].status(round_id).failure_reason
    assert "not a valid curve point" in reason
    assert "evil signed chunk 0 of the list of evil at hop 0, which holds invalid points" in reason
    _alive(live)


@pytest.mark.e2e
def test_unsealed_and_misaddressed_relays_are_refused(live: dict) -> None:
    evil = RawCompany(live)
    round_id = live["auditor"].open_round(["evil", "google"]).round_id
    evil.enroll(evil.next_work("join_round", round_id).join_round, list_size=20)
    evil.confirm(round_id)
    evil.next_work("blind_list", round_id)
    points = [b"\x02" * POINT_SIZE] * 20
    got, details = _code(
        lambda: evil.stub.UploadList(iter([_chunk(round_id, "evil", "evil", 0, 20, points)]))
    )
    assert got == grpc.StatusCode.FAILED_PRECONDITION and "is not sealed to google" in details
    assert live["auditor"].status(round_id).phase == "RELAYING"  # refused, nothing kept
    _alive(live)
    evil.stub.Withdraw(pb.WithdrawRequest(round_id=round_id, company="evil", reason="test over"))


@pytest.mark.e2e
def test_too_many_chunks_are_refused(live: dict) -> None:
    evil = RawCompany(live)
    round_id = live["auditor"].open_round(["evil", "google"]).round_id
    join = evil.next_work("join_round", round_id).join_round
    evil.enroll(join, list_size=100)
    evil.confirm(round_id)
    evil.next_work("blind_list", round_id)
    chunk = _chunk(join.round_id, "evil", "evil", 0, 100, [b"\x02" * POINT_SIZE])
    chunk.chunk_count = 51
    got, details = _code(lambda: evil.stub.UploadList(iter([chunk])))
    assert got == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit is 50" in details
    _alive(live)
    evil.stub.Withdraw(pb.WithdrawRequest(round_id=round_id, company="evil", reason="test over"))


@pytest.mark.e2e
def test_daemons_keep_serving_after_the_catalogue(live: dict) -> None:
    write_csv(live["folder"] / "current.csv", [(f"DIGIT_{i}", i % 2) for i in range(50)])
    auditor = live["auditor"]
    round_id = auditor.open_round(["google", "broken-csv"]).round_id
    auditor.wait(round_id, timeout=60)
    assert auditor.result(round_id)["companies"] == ["google", "broken-csv"]
    _alive(live)
