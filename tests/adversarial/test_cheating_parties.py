"""Issue 11: the parties themselves cheat, over real gRPC with valid certificates.

A real coordinator process and two real company daemons, bank-a and bank-b, whose
keys never left them: each ran `monoculture certs request`, the auditor ran
`monoculture certs sign` on the request, and each pinned the other's fingerprint
(`monoculture certs fingerprint`) in its [peers]. A third company, mallory, joined the
same way and is pinned too: a legitimate party that cheats. The auditor also mints
companies of its own with `certs issue --company`.

Each test fails on the code before issue 11 (noted in its docstring) and passes now.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import grpc
import pytest
from conftest import example, stored_chunks
from vectors.independent import varint

from monoculture.auditor import AuditorClient
from monoculture.core.dataset import InputSpec
from monoculture.core.errors import RoundFailed
from monoculture.core.identity import Identity, Role
from monoculture.core.messages import Status
from monoculture.core.wire import sealed_size
from monoculture.pki import init_ca, issue_certificate, tls_files
from monoculture.research.simulate import CompanyInput, start_company, start_coordinator
from monoculture.transport import TlsFiles
from monoculture.v1 import monoculture_pb2 as pb

from .cheat import Cheat, valid_points

pytestmark = pytest.mark.e2e
HONEST = ("bank-a", "bank-b")


def certs(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "monoculture", "certs", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def company_keys(folder: Path, ca_dir: Path, name: str) -> TlsFiles:
    """The deployment steps of README "Deployment": the company makes its key and a request,
    the auditor signs the request without ever seeing the key."""
    own = folder / name
    certs("request", "--company", name, "--dir", str(own))
    certs("sign", "--dir", str(ca_dir), str(own / f"company-{name}.csr"))
    (own / "ca.pem").write_bytes((ca_dir / "ca.pem").read_bytes())
    return TlsFiles(own / "ca.pem", own / f"company-{name}.pem", own / f"company-{name}.key")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    folder = tmp_path_factory.mktemp("cheating")
    ca_dir = folder / "auditor-ca"
    init_ca(ca_dir)
    issue_certificate(ca_dir, Identity(Role.COORDINATOR, "127.0.0.1"), host="127.0.0.1")
    issue_certificate(ca_dir, Identity(Role.AUDITOR, "auditor"))
    keys = {name: company_keys(folder, ca_dir, name) for name in (*HONEST, "mallory")}
    pins = {name: certs("fingerprint", str(tls.cert_file)).strip() for name, tls in keys.items()}
    with ExitStack() as stack:
        record = folder / "recorded"
        address = start_coordinator(
            folder, stack, tls=tls_files(ca_dir, Identity(Role.COORDINATOR, "127.0.0.1")), record_dir=record
        )
        daemons = {}
        for name, data in zip(HONEST, ("google", "microsoft"), strict=True):
            company = CompanyInput(name, InputSpec(example("digit", data)))
            peers = {other: pin for other, pin in pins.items() if other != name}
            daemons[name] = start_company(
                company, address, folder, stack, rounds=0, tls=keys[name], peers=peers
            )
        auditor = stack.enter_context(
            AuditorClient(address, tls_files(ca_dir, Identity(Role.AUDITOR, "auditor")))
        )
        yield {
            "folder": folder, "ca_dir": ca_dir, "address": address, "keys": keys, "auditor": auditor,
            "daemons": daemons, "record": record,
        }  # fmt: skip


def minted(world: dict, name: str) -> TlsFiles:
    """A company certificate the auditor issues on its own (`certs issue --company`): the key is
    the auditor's. Kept apart from the auditor's CA folder so it does not replace anything."""
    folder = world["folder"] / f"minted-{name}-{time.monotonic_ns()}"
    folder.mkdir()
    for stem in ("ca.pem", "ca.key"):
        (folder / stem).write_bytes((world["ca_dir"] / stem).read_bytes())
    certs("issue", "--dir", str(folder), "--company", name)
    return tls_files(folder, Identity(Role.COMPANY, name))


def honest_alive(world: dict) -> None:
    for name, process in world["daemons"].items():
        assert process.poll() is None, f"the daemon of {name} died"
        assert "Traceback" not in (world["folder"] / f"client-{name}.log").read_text()
    assert "Traceback" not in (world["folder"] / "coordinator.log").read_text()


def failure(world: dict, round_id: str, timeout: float = 60) -> Status:
    with pytest.raises(RoundFailed):
        world["auditor"].wait(round_id, timeout=timeout)
    return world["auditor"].status(round_id)


def enrolled(world: dict, round_id: str) -> set[str]:
    """The companies whose keys and list size reached the coordinator in this round."""
    database = world["folder"] / "coordinator-state" / "coordinator.sqlite"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return {row[0] for row in db.execute("SELECT company FROM peers WHERE round_id = ?", (round_id,))}


def chunks_from(world: dict, round_id: str, sender: str) -> list[pb.ListChunk]:
    stored = world["record"] / "stored.bin"
    chunks = stored_chunks(stored.read_bytes()) if stored.exists() else []
    return [c for c in chunks if c.round_id == round_id and c.sender == sender]


def test_two_pinned_daemons_complete_a_round(world: dict) -> None:
    auditor = world["auditor"]
    round_id = auditor.open_round(list(HONEST)).round_id
    auditor.wait(round_id, timeout=120)
    assert auditor.result(round_id)["companies"] == list(HONEST)
    honest_alive(world)


def test_a_company_the_auditor_minted_is_refused_before_anything_is_sent(world: dict) -> None:
    """Before: the daemons checked only that a peer chains to the CA, which the auditor runs,
    so bank-a and bank-b enrolled and relayed their lists through `fake`."""
    fake = Cheat(world["address"], "fake", minted(world, "fake"))
    round_id = world["auditor"].open_round([*HONEST, "fake"]).round_id
    # fake enrols if it can: an honest daemon may have withdrawn (failing the round) first
    with contextlib.suppress(AssertionError, grpc.RpcError):
        fake.stub.Enroll(fake.enrollment(fake.next_work("join_round", round_id, timeout=5).join_round, 100))
    status = failure(world, round_id)
    assert status.failed_party in HONEST
    assert f"fake is not among the companies {status.failed_party} agreed to be measured with" in (
        status.failure_reason
    )
    assert enrolled(world, round_id) <= {"fake"}  # neither bank sent a key or a list size
    assert not chunks_from(world, round_id, "bank-a") and not chunks_from(world, round_id, "bank-b")
    fake.close()
    honest_alive(world)


def test_an_impostor_under_a_pinned_name_is_refused_before_any_list_is_sent(world: dict) -> None:
    """The auditor certifies a second key under the name of a company bank-a pinned. Before:
    accepted, since the certificate chains to the CA and names mallory."""
    impostor = Cheat(world["address"], "mallory", minted(world, "mallory"))
    round_id = world["auditor"].open_round(["bank-a", "mallory"]).round_id
    join = impostor.next_work("join_round", round_id).join_round
    impostor.stub.Enroll(impostor.enrollment(join, 100))
    status = failure(world, round_id)
    # bank-a refuses the keys the coordinator shows it, naming the CA's key for mallory; the failure
    # is put on the coordinator, which passed that key on (its auditor certified it).
    assert status.failed_party == "coordinator" and "bank-a withdrew" in status.failure_reason
    assert "the certificate of mallory holds a key other than the one pinned for it" in status.failure_reason
    assert not chunks_from(world, round_id, "bank-a")
    impostor.close()
    honest_alive(world)


@pytest.mark.parametrize("field", ["tag_public_key", "relay_public_key"])
def test_a_low_order_key_is_refused_naming_the_sender_and_the_round_untouched(
    world: dict, field: str
) -> None:
    """Before: the enrolment changed the round's state, then the key check raised an internal
    error, which the honest daemons then met in their own requests."""
    mallory = Cheat(world["address"], "mallory", world["keys"]["mallory"])
    auditor = world["auditor"]
    round_id = auditor.open_round([*HONEST, "mallory"], deadline_seconds=8).round_id
    request = mallory.enrollment(mallory.next_work("join_round", round_id).join_round, 100)
    setattr(request, field, bytes(32))  # all zero: an X25519 point of low order
    with pytest.raises(grpc.RpcError) as refused:
        mallory.stub.Enroll(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "of mallory is a low-order point" in refused.value.details()
    assert auditor.status(round_id).phase == "OPEN"
    assert "mallory" not in enrolled(world, round_id)
    status = failure(world, round_id)  # the deadline names the party that did not enrol
    assert status.failed_party == "mallory" and "mallory did not enrol" in status.failure_reason
    mallory.close()
    honest_alive(world)
    again = auditor.open_round(list(HONEST)).round_id  # the honest pair's next round completes
    auditor.wait(again, timeout=120)


def test_garbage_sealed_by_a_sender_is_blamed_on_it_with_evidence(world: dict) -> None:
    """Before: bank-a could not tell garbage its sender sealed from a relay altered in transit,
    and blamed the coordinator."""
    mallory = Cheat(world["address"], "mallory", world["keys"]["mallory"])
    round_id = world["auditor"].open_round(["mallory", "bank-a"]).round_id
    mallory.join(round_id, 20)
    work = mallory.next_work("blind_list", round_id).blind_list
    assert (work.list_owner, work.hop, work.receiver.company) == ("mallory", 0, "bank-a")
    mallory.stub.UploadList(mallory.garbage_upload(work, 20))  # signed, the right size: accepted
    status = failure(world, round_id)
    assert status.failed_party == "mallory"
    assert (
        "mallory signed chunk 0 of the list of mallory at hop 0 but sealed it so that it does not open"
        in (status.failure_reason)
    )
    mallory.close()
    honest_alive(world)


def test_blame_without_evidence_is_a_claim_and_forged_evidence_is_refuted(world: dict) -> None:
    """Before: `Withdraw.blamed` was taken at its word: mallory could put a failure on bank-a."""
    mallory = Cheat(world["address"], "mallory", world["keys"]["mallory"])
    auditor = world["auditor"]
    round_id = auditor.open_round(["bank-a", "mallory"]).round_id
    mallory.stub.Withdraw(
        pb.WithdrawRequest(round_id=round_id, company="mallory", reason="bank-a cheated", blamed="bank-a")
    )
    status = auditor.status(round_id)
    assert status.failed_party == "mallory"
    assert "mallory blames bank-a; recorded as a claim, not a verdict: no evidence was given" in (
        status.failure_reason
    )

    round_id = auditor.open_round(["bank-a", "mallory"]).round_id
    mallory.join(round_id, 20)
    work = mallory.next_work("blind_list", round_id).blind_list
    forged = next(mallory.garbage_upload(work, 20))  # mallory's own chunk, dressed as bank-a's
    forged.sender, forged.receiver, forged.list_owner = "bank-a", "mallory", "bank-a"
    evidence = pb.BlameEvidence(chunk=forged, receiver_relay_private_key=mallory.relay.private_bytes())
    claim = "bank-a sealed garbage"
    mallory.stub.Withdraw(pb.WithdrawRequest(
        round_id=round_id, company="mallory", reason=claim, blamed="bank-a", evidence=evidence,
    ))  # fmt: skip
    status = auditor.status(round_id)
    assert status.failed_party == "mallory"
    assert "its evidence does not hold" in status.failure_reason
    assert "does not carry bank-a's signature" in status.failure_reason
    mallory.close()
    honest_alive(world)


def test_chunks_past_the_count_or_with_oversized_seals_are_refused_and_nothing_is_kept(world: dict) -> None:
    """Before: a chunk with chunk_index >= chunk_count was stored, `sealed` had no size bound
    (160 MB from a list of 1,000), and four chunks of a list announced as one were all stored."""
    mallory = Cheat(world["address"], "mallory", world["keys"]["mallory"])
    auditor = world["auditor"]
    round_id = auditor.open_round(["mallory", "bank-a"], deadline_seconds=30).round_id
    mallory.join(round_id, 20)
    work = mallory.next_work("blind_list", round_id).blind_list
    good = next(mallory.sealed_upload(work, valid_points(20)))

    def variant(**changes: object) -> pb.ListChunk:
        chunk = pb.ListChunk()
        chunk.CopyFrom(good)
        for name, value in changes.items():
            setattr(chunk, name, value)
        return mallory.signer.sign(chunk)

    cases = [
        ([variant(chunk_index=1)], "chunk 1 of a list announced as 1 chunks"),
        ([variant(sealed=good.sealed + bytes(4_000_000 - len(good.sealed) - 1000))], "seal to"),
        ([good, variant(chunk_index=1), variant(chunk_index=2), variant(chunk_index=3)], "announced as 1"),
    ]
    for chunks, message in cases:
        with pytest.raises(grpc.RpcError) as refused:
            mallory.stub.UploadList(iter(chunks))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
        assert message in refused.value.details() and "mallory" in refused.value.details()
    kept = chunks_from(world, round_id, "mallory")
    assert [c.chunk_index for c in kept] == [0] and len(kept[0].sealed) == sealed_size(20)
    assert auditor.status(round_id).phase == "RELAYING"  # refused uploads changed nothing
    mallory.stub.Withdraw(pb.WithdrawRequest(round_id=round_id, company="mallory", reason="test over"))
    mallory.close()
    honest_alive(world)


def _with_unknown_field(chunk: pb.ListChunk, size: int) -> pb.ListChunk:
    """The chunk with `size` bytes in field 99, which the protocol does not define (tag 99,
    wire type 2: varint key 0x9a 0x06, then the length)."""
    extra = b"\x9a\x06" + varint(size) + bytes(size)
    out = pb.ListChunk()
    out.MergeFromString(chunk.SerializeToString() + extra)
    return out


def test_fields_the_protocol_does_not_define_are_not_stored(world: dict) -> None:
    """Before: the coordinator stored a chunk as sent, unknown fields and all (outside the
    signature and every size check): 66 MB for a list of 20."""
    mallory = Cheat(world["address"], "mallory", world["keys"]["mallory"])
    round_id = world["auditor"].open_round(["mallory", "bank-a"], deadline_seconds=30).round_id
    mallory.join(round_id, 20)
    work = mallory.next_work("blind_list", round_id).blind_list
    padded = _with_unknown_field(next(mallory.sealed_upload(work, valid_points(20))), 3_000_000)
    assert padded.ByteSize() > 3_000_000
    mallory.stub.UploadList(iter([padded]))
    kept = chunks_from(world, round_id, "mallory")
    assert len(kept) == 1 and kept[0].ByteSize() < 5_000  # the chunk as the protocol defines it
    mallory.stub.Withdraw(pb.WithdrawRequest(round_id=round_id, company="mallory", reason="test over"))
    mallory.close()
    honest_alive(world)


def test_chunks_sent_after_the_round_ended_are_not_kept(world: dict) -> None:
    """Before: the round's phase was checked at the first chunk of a stream only, so chunks
    sent after a withdrawal stayed in the database for good."""
    mallory = Cheat(world["address"], "mallory", world["keys"]["mallory"])
    round_id = world["auditor"].open_round(["mallory", "bank-a"], deadline_seconds=30).round_id
    mallory.join(round_id, 20)
    work = mallory.next_work("blind_list", round_id).blind_list
    first, later = mallory.sealed_chunks(work, valid_points(20), 10)  # a valid list in two chunks

    def stream() -> Iterator[pb.ListChunk]:
        yield first
        time.sleep(1.0)  # let the coordinator store chunk 0
        mallory.stub.Withdraw(pb.WithdrawRequest(round_id=round_id, company="mallory", reason="bye"))
        yield later

    with pytest.raises(grpc.RpcError):
        mallory.stub.UploadList(stream())
    assert world["auditor"].status(round_id).phase == "FAILED"
    database = world["folder"] / "coordinator-state" / "coordinator.sqlite"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT COUNT(*) FROM chunks WHERE round_id = ?", (round_id,)).fetchone()[0]
    assert rows == 0
    mallory.close()
    honest_alive(world)
