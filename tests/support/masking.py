"""Pair keys for tests that build masked values without daemons (core/masks.py)."""

from __future__ import annotations

from dataclasses import dataclass

from monoculture.core import masks
from monoculture.core.psi_crypto import x25519_key


@dataclass(frozen=True)
class SignedKeys:
    """The fields of a company's signed round keys that the transcript takes (core.masks.SignedKeys)."""

    company: str
    relay_public_key: bytes
    tag_public_key: bytes = b""
    signature: bytes = b""


def round_pair_keys(round_id: str, roster: tuple[str, ...]) -> dict[str, dict[int, bytes]]:
    """Every company's pairwise mask keys, as the daemons derive them from their relay keys."""
    private = {name: x25519_key() for name in roster}
    public = {name: key.public_key().public_bytes_raw() for name, key in private.items()}
    transcript = masks.transcript_digest(round_id, roster, [SignedKeys(n, public[n]) for n in roster])
    return {
        name: masks.pair_keys(
            private[name].private_bytes_raw(),
            name,
            {other: public[other] for other in roster if other != name},
            transcript,
            round_id,
            roster,
        )
        for name in roster
    }
