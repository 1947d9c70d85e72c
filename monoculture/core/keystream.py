"""Random bytes that a secret seed makes reproducible (shuffles, re-randomisation, dummy ids).

A company draws a round's randomness from a seed sealed in its round state, so a restarted
company sends byte for byte what it sent before; without a seed the bytes come from
os.urandom.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def random_bytes(seed: bytes | None, info: bytes, length: int) -> bytes:
    """`length` bytes: os.urandom without a seed; with one, the AES-256-CTR keystream (zero IV)
    under HKDF-SHA256(ikm = seed, no salt, info), the same on every call (each info names one
    use, so a key is never used for two streams)."""
    if seed is None:
        return os.urandom(length)
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(seed)
    # CTR encrypting zeros gives the keystream itself; finalize adds nothing.
    return Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update(bytes(length))
