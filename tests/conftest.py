from __future__ import annotations

from pathlib import Path

import pytest

from monoculture.v1 import monoculture_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "api-predictions"


def example(folder: str, company: str) -> Path:
    return EXAMPLES / folder / f"{company}.csv"


def write_csv(path: Path, rows: list[tuple[str, object]], header: str = "id,failed") -> Path:
    path.write_text(header + "\n" + "".join(f"{i},{f}\n" for i, f in rows), encoding="utf-8")
    return path


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


def recorded(stored: bytes) -> list[tuple[str, bytes]]:
    """A coordinator's record_dir/stored.bin (StoreRecorder): (2-byte kind length, kind, 8-byte
    payload length, payload)*, as (kind, payload) pairs."""
    records, offset = [], 0
    while offset < len(stored):
        kind_len = int.from_bytes(stored[offset : offset + 2], "big")
        kind = stored[offset + 2 : offset + 2 + kind_len].decode()
        offset += 2 + kind_len
        size = int.from_bytes(stored[offset : offset + 8], "big")
        records.append((kind, stored[offset + 8 : offset + 8 + size]))
        offset += 8 + size
    return records


def stored_chunks(stored: bytes) -> list[pb.ListChunk]:
    """The list chunks in a coordinator's record_dir/stored.bin."""
    return [pb.ListChunk.FromString(payload) for kind, payload in recorded(stored) if kind == "list-chunk"]


EXACT_KEYS = (
    "shared_individuals",
    "failures",
    "systemic_failures",
    "failure_count_histogram",
    "pattern_counts",
)


def assert_same_integers(secure: dict, plain: dict) -> None:
    """Every integer of a private result equals the plaintext computation's."""
    for key in EXACT_KEYS:
        assert secure[key] == plain[key], key
