"""Where a re-randomised tag's time goes: microseconds per tag for every operation (issue 20).

    .venv/bin/python scripts/bench_rerandomise.py [--count 2000] [--repeats 3]

Times, on one core and best of `--repeats`, each libsodium call the tag code makes
(core/rerandomise.py), the randomiser and mask derivations, the whole per-tag functions
(encrypt, rerandomise, the coordinator's check and decryption), and the routes issue 20
names: ristretto255 (through rbcl, when installed: its prime-order encoding needs no
torsion check) and a fixed-base table of multiples of Y driven from Python. Prints one
line per operation; nothing is written.
"""

from __future__ import annotations

import argparse
import importlib
import os
import time
from collections.abc import Callable
from typing import Any

import nacl.bindings as sodium
import numpy as np

from monoculture.core import rerandomise as rr


def _best(run: Callable[[], object], count: int, repeats: int) -> float:
    """Microseconds of this process's CPU per item of `run` (which does `count` items), best of
    `repeats`: CPU time, not wall time, as the machine is shared."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best / count * 1e6


def _scalars(count: int) -> list[bytes]:
    return [rr.scalar(int.from_bytes(os.urandom(64), "big")) for _ in range(count)]


def _print(what: str, micros: float) -> None:
    print(f"  {what:<58} {micros:8.1f} us")


def ed25519_operations(count: int, repeats: int) -> None:
    ks, key = _scalars(count), rr.CoordinatorKey(os.urandom(32)).public_key
    points = [sodium.crypto_scalarmult_ed25519_base_noclamp(k) for k in ks]
    pairs = list(zip(points, points[1:] + points[:1], strict=True))
    print("edwards25519 through PyNaCl (libsodium), one call each:")
    _print(
        "s*B  crypto_scalarmult_ed25519_base_noclamp",
        _best(lambda: [sodium.crypto_scalarmult_ed25519_base_noclamp(k) for k in ks], count, repeats),
    )
    _print(
        "s*Y  crypto_scalarmult_ed25519_noclamp",
        _best(lambda: [sodium.crypto_scalarmult_ed25519_noclamp(k, key) for k in ks], count, repeats),
    )
    _print(
        "P+Q  crypto_core_ed25519_add",
        _best(lambda: [sodium.crypto_core_ed25519_add(p, q) for p, q in pairs], count, repeats),
    )
    _print(
        "point check  crypto_core_ed25519_is_valid_point",
        _best(lambda: [sodium.crypto_core_ed25519_is_valid_point(p) for p in points], count, repeats),
    )
    _print(
        "Python call overhead (scalar_add of two scalars)",
        _best(lambda: [sodium.crypto_core_ed25519_scalar_add(k, k) for k in ks], count, repeats),
    )
    table = _window_table(key)
    _print("s*Y  from a 4-bit window table of Y, adds from Python", _best(
        lambda: [_table_times(table, k) for k in ks[:200]], 200, repeats))  # fmt: skip


def _window_table(point: bytes) -> list[list[bytes]]:
    """table[w][d] = d * 16^w * point, d = 1..15 (the fixed-base route: 64 additions a product)."""
    table = []
    for w in range(64):
        base = sodium.crypto_scalarmult_ed25519_noclamp(rr.scalar(16**w), point)
        row = [rr.IDENTITY, base]
        for _ in range(14):
            row.append(sodium.crypto_core_ed25519_add(row[-1], base))
        table.append(row)
    return table


def _table_times(table: list[list[bytes]], k: bytes) -> bytes:
    value, acc = int.from_bytes(k, "little"), rr.IDENTITY
    for w in range(64):
        digit = (value >> (4 * w)) & 15
        if digit:
            acc = sodium.crypto_core_ed25519_add(acc, table[w][digit])
    return acc


def derivations(count: int, repeats: int) -> None:
    keys = {1: os.urandom(32), 2: os.urandom(32)}
    u = np.frombuffer(os.urandom(16 * count), dtype=np.uint8).reshape(count, 16)
    bits = np.zeros(count, dtype=np.uint8)
    tokens = os.urandom(33 * count)
    seed = os.urandom(32)
    print("scalars derived in Python (per tag):")
    _print(
        "randomisers (AES-CTR stream, 64 bytes read mod L)",
        _best(lambda: rr.randomisers(seed, b"bench", count), count, repeats),
    )
    _print(
        "randomisers from os.urandom", _best(lambda: rr.randomisers(None, b"bench", count), count, repeats)
    )
    values = rr.randomisers(seed, b"bench", count)
    _print("scalars(): ints to 32-byte little-endian", _best(lambda: rr.scalars(values), count, repeats))
    _print(
        "exponent_values (hop 0, k = 3: two pair masks)",
        _best(lambda: rr.exponent_values(0, keys, u, bits), count, repeats),
    )
    _print(
        "token_masks (last hop, k = 3)", _best(lambda: rr.token_masks(0, keys, tokens, 33), count, repeats)
    )


def whole_steps(count: int, repeats: int) -> None:
    owner = rr.CoordinatorKey(os.urandom(32))
    key = owner.public_key
    values, randomness, shifts = (b"".join(_scalars(count)) for _ in range(3))
    tags = rr.encrypt(key, values, randomness)
    print("whole steps (core/rerandomise.py, per tag):")
    _print("encrypt (hop 0)", _best(lambda: rr.encrypt(key, values, randomness), count, repeats))
    _print("rerandomise (relay)", _best(lambda: rr.rerandomise(key, tags, randomness), count, repeats))
    _print(
        "rerandomise with shifts (last relay)",
        _best(lambda: rr.rerandomise(key, tags, randomness, shifts), count, repeats),
    )
    _print(
        "invalid_tag_points, one thread (coordinator, per tag)",
        _best(lambda: rr.invalid_tag_points(tags, threads=1), count, repeats),
    )
    table = rr.SumTable(3)
    _print(
        "decrypt_sums, k = 3, one thread (per shared individual)",
        _best(lambda: owner.decrypt_sums([tags, tags, tags], table, threads=1), count, repeats),
    )


def _ristretto() -> Any:
    """pysodium (ctypes over the system's libsodium) or rbcl (a libsodium bundled in the wheel),
    whichever is installed; None if neither is."""
    for name in ("pysodium", "rbcl"):
        try:
            return importlib.import_module(name)
        except (ImportError, OSError):
            continue
    return None


def ristretto_operations(count: int, repeats: int) -> None:
    lib = _ristretto()
    if lib is None:
        print("ristretto255: neither pysodium nor rbcl installed, not measured")
        return
    ks = _scalars(count)
    points = [lib.crypto_scalarmult_ristretto255_base(k) for k in ks]
    key = points[0]
    pairs = list(zip(points, points[1:] + points[:1], strict=True))
    print(f"ristretto255 through {lib.__name__} (libsodium), one call each:")
    _print(
        "s*B  crypto_scalarmult_ristretto255_base",
        _best(lambda: [lib.crypto_scalarmult_ristretto255_base(k) for k in ks], count, repeats),
    )
    _print(
        "s*Y  crypto_scalarmult_ristretto255",
        _best(lambda: [lib.crypto_scalarmult_ristretto255(k, key) for k in ks], count, repeats),
    )
    _print(
        "P+Q  crypto_core_ristretto255_add (decodes, so checks, both)",
        _best(lambda: [lib.crypto_core_ristretto255_add(p, q) for p, q in pairs], count, repeats),
    )
    _print(
        "point check  crypto_core_ristretto255_is_valid_point",
        _best(lambda: [lib.crypto_core_ristretto255_is_valid_point(p) for p in points], count, repeats),
    )
    ristretto_steps(lib, count, repeats)


def ristretto_steps(lib: Any, count: int, repeats: int) -> None:
    """The steps of core/rerandomise.py written for ristretto255 (a prototype, checked to decrypt
    right): no separate point check, as decoding a ristretto255 encoding is the check."""
    secret = _scalars(1)[0]
    key = lib.crypto_scalarmult_ristretto255_base(secret)
    values, randomness, shifts = _scalars(count), _scalars(count), _scalars(count)
    base, times, add = (lib.crypto_scalarmult_ristretto255_base, lib.crypto_scalarmult_ristretto255,
                        lib.crypto_core_ristretto255_add)  # fmt: skip

    def encrypt() -> list[bytes]:
        return [base(r) + add(base(e), times(r, key)) for e, r in zip(values, randomness, strict=True)]

    def rerandomise(tags: list[bytes], shifted: bool) -> list[bytes]:
        out = []
        for tag, s, t in zip(tags, randomness, shifts, strict=True):
            c2 = add(tag[32:], times(s, key))
            out.append(add(tag[:32], base(s)) + (add(c2, base(t)) if shifted else c2))
        return out

    def decrypt(columns: list[list[bytes]]) -> list[bytes]:
        out = []
        for row in zip(*columns, strict=True):
            c1, c2 = row[0][:32], row[0][32:]
            for tag in row[1:]:
                c1, c2 = add(c1, tag[:32]), add(c2, tag[32:])
            out.append(lib.crypto_core_ristretto255_sub(c2, times(secret, c1)))
        return out

    tags = encrypt()
    relayed = rerandomise(tags, shifted=False)
    expected = [base(e) for e in values]
    if decrypt([relayed]) != expected:  # C2 - y*C1 = e*B after a relay: the prototype is right
        raise RuntimeError("the ristretto255 prototype does not decrypt what it encrypted")
    print("ristretto255 steps, a prototype of core/rerandomise.py (per tag):")
    _print("encrypt (hop 0)", _best(encrypt, count, repeats))
    _print("rerandomise (relay)", _best(lambda: rerandomise(tags, False), count, repeats))
    _print("rerandomise with shifts (last relay)", _best(lambda: rerandomise(tags, True), count, repeats))
    _print(
        "check every point of a tag (coordinator, per tag)",
        _best(
            lambda: [
                lib.crypto_core_ristretto255_is_valid_point(t[:32])
                and lib.crypto_core_ristretto255_is_valid_point(t[32:])
                for t in tags
            ],
            count,
            repeats,
        ),
    )
    _print(
        "decrypt, k = 3 (per shared individual)", _best(lambda: decrypt([tags, tags, tags]), count, repeats)
    )


def p256_reference(count: int, repeats: int) -> None:
    """The masked round's own work per record, for scale: openmined-psi's P-256 steps."""
    from monoculture.core.psi_crypto import BlindingKey

    key = BlindingKey.fresh()
    ids = [os.urandom(8).hex() for _ in range(count)]
    points = key.hash_and_blind(ids)
    print(
        "P-256 blinding (openmined-psi), for scale (a record costs one of the first and k - 1 of the second):"
    )
    _print("hash-to-curve + multiply (hop 0)", _best(lambda: key.hash_and_blind(ids), count, repeats))
    _print("multiply (a relay)", _best(lambda: key.reblind(points), count, repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="tags per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements; the best counts")
    args = parser.parse_args()
    print(f"microseconds of CPU per tag, one core, best of {args.repeats} x {args.count} (table route: 200)")
    p256_reference(args.count, args.repeats)
    ed25519_operations(args.count, args.repeats)
    ristretto_operations(args.count, args.repeats)
    derivations(args.count, args.repeats)
    whole_steps(args.count, args.repeats)


if __name__ == "__main__":
    main()
