"""Privacy by observation (Must show 3): everything the coordinator receives and
stores holds no raw id, no id hashed by a fixed function and no per-record
failure bit in the clear.

The round runs with --insecure on purpose: with mTLS the tap would see only
TLS records. In plaintext it sees exactly the protobuf bytes the coordinator's
gRPC layer decodes, so the test observes what the coordinator itself receives.
"""

from __future__ import annotations

import hashlib
from contextlib import ExitStack

import numpy as np
import pytest
from conftest import example, stored_chunks
from wiretap import WireTap

from monoculture.auditor import AuditorClient
from monoculture.core.dataset import InputSpec, load_records
from monoculture.core.psi_crypto import NONCE_SIZE, TAG_SIZE, split_tags
from monoculture.research.simulate import CompanyInput, start_company, start_coordinator

COMPANIES = ["google", "microsoft", "ibm"]
HASHES = ["md5", "sha1", "sha224", "sha256", "sha384", "sha512", "sha3_256", "blake2b", "blake2s"]


def _fixed_hashes(record_id: str) -> list[bytes]:
    forms = []
    for name in HASHES:
        digest = hashlib.new(name, record_id.encode()).digest()
        forms += [digest, digest.hex().encode()]
    return forms


@pytest.fixture(scope="module")
def observed_round(tmp_path_factory: pytest.TempPathFactory) -> dict:
    workdir = tmp_path_factory.mktemp("privacy")
    record_dir = workdir / "recorded"
    with ExitStack() as stack:
        address = start_coordinator(workdir, stack, record_dir=record_dir)
        tap = WireTap(int(address.rsplit(":", 1)[1]))
        stack.callback(tap.close)
        for name in COMPANIES:
            company = CompanyInput(name, InputSpec(example("digit", name)))
            start_company(company, f"127.0.0.1:{tap.port}", workdir, stack)
        with AuditorClient(address, None) as auditor:
            status = auditor.open_round(COMPANIES)
            auditor.wait(status.round_id, timeout=300)
            result = auditor.result(status.round_id)
        received = tap.received_by_server()
    return {
        "received": received,
        "stored": (record_dir / "stored.bin").read_bytes(),
        "result": result,
        "records": {n: load_records(InputSpec(example("digit", n))) for n in COMPANIES},
    }


def test_the_observed_round_is_exact(observed_round: dict) -> None:
    assert round(observed_round["result"]["homogenization"], 4) == 4.6676
    # The tap saw the whole upload: at least 3 lists x 3 hops x 2000 x (33 + 29) bytes.
    assert len(observed_round["received"]) > 9 * 2000 * (33 + TAG_SIZE)


@pytest.mark.parametrize("where", ["received", "stored"])
def test_no_raw_or_fixed_hash_ids(observed_round: dict, where: str) -> None:
    blob = observed_round[where]
    for records in observed_round["records"].values():
        for position, record_id in enumerate(records.ids):
            assert record_id.encode() not in blob
            # The id minus its common file suffix is still unique; not there either.
            assert record_id.rsplit(".", 1)[0].encode() not in blob
            # A protocol that sent fixed hashes would send them for every id: every
            # 7th id (about 290 per company, 18 forms each) keeps the test fast.
            if position % 7 == 0:
                for form in _fixed_hashes(record_id):
                    assert form not in blob


@pytest.mark.parametrize("where", ["received", "stored"])
def test_no_failure_bits_in_the_clear(observed_round: dict, where: str) -> None:
    blob = observed_round[where]
    for records in observed_round["records"].values():
        bits = records.failed
        checked = 0
        # The bit column in file order, packed, one byte per bit, or as text.
        for window in range(0, len(bits) - 64, 97):
            part = bits[window : window + 64]
            if not 12 <= int(part.sum()) <= 52:
                continue  # near-constant windows also match counters and padding by chance
            assert np.packbits(part).tobytes() not in blob
            assert part.tobytes() not in blob
            assert ",".join(map(str, part.tolist())).encode() not in blob
            assert "".join(map(str, part.tolist())).encode() not in blob
            checked += 1
        assert checked >= 5, "too few mixed windows to test"


def test_stored_tags_are_unique_ciphertexts(observed_round: dict) -> None:
    chunks = stored_chunks(observed_round["stored"])
    assert chunks, "the recorder stored no list"
    by_list: dict[tuple[str, int], list[bytes]] = {}
    for chunk in chunks:
        by_list.setdefault((chunk.list_owner, chunk.hop), []).extend(split_tags(chunk.tags))
    for tags in by_list.values():
        assert len(set(tags)) == len(tags)  # no two records share a tag, whatever their bits
        bodies = {t[NONCE_SIZE:] for t in tags}
        assert len(bodies) == len(tags)
