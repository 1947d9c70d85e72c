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
import os
import time
from collections.abc import Callable

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


def ristretto_operations(count: int, repeats: int) -> None:
    try:
        import rbcl  # type: ignore[import-not-found]
    except ImportError:
        print("ristretto255: rbcl not installed (pip install rbcl), not measured")
        return
    ks = _scalars(count)
    points = [rbcl.crypto_scalarmult_ristretto255_base(k) for k in ks]
    key = points[0]
    pairs = list(zip(points, points[1:] + points[:1], strict=True))
    print("ristretto255 through rbcl (libsodium), one call each:")
    _print(
        "s*B  crypto_scalarmult_ristretto255_base",
        _best(lambda: [rbcl.crypto_scalarmult_ristretto255_base(k) for k in ks], count, repeats),
    )
    _print(
        "s*Y  crypto_scalarmult_ristretto255",
        _best(lambda: [rbcl.crypto_scalarmult_ristretto255(k, key) for k in ks], count, repeats),
    )
    _print(
        "P+Q  crypto_core_ristretto255_add (decodes, so checks, both)",
        _best(lambda: [rbcl.crypto_core_ristretto255_add(p, q) for p, q in pairs], count, repeats),
    )
    _print(
        "point check  crypto_core_ristretto255_is_valid_point",
        _best(lambda: [rbcl.crypto_core_ristretto255_is_valid_point(p) for p in points], count, repeats),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="tags per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements; the best counts")
    args = parser.parse_args()
    print(f"microseconds of CPU per tag, one core, best of {args.repeats} x {args.count} (table route: 200)")
    ed25519_operations(args.count, args.repeats)
    ristretto_operations(args.count, args.repeats)
    derivations(args.count, args.repeats)
    whole_steps(args.count, args.repeats)


if __name__ == "__main__":
    main()
