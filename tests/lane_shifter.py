"""A company daemon that shifts lanes of its own masked values (test aid for the round-oracle
probes over real processes).

    python tests/lane_shifter.py ID=SHIFT[,ID=SHIFT...] client run --config FILE [--insecure]

It is the real `monoculture client run`, with its own certificate and keys, except that before
sealing its hop-0 tags it adds SHIFT (an integer) to its masked value (or, with re-randomised
tags, its exponent) of each ID it holds. Everything else follows the protocol.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from monoculture.cli import main
from monoculture.client import company as company_steps
from monoculture.core import masks
from monoculture.core import rerandomise as rr


def _install(shifts: dict[str, int]) -> None:
    digests = {bytes(masks.id_digests([pid])[0]): shift for pid, shift in shifts.items()}
    values_of, exponents_of = company_steps.masked_values, rr.exponent_values

    def rows(u: Any) -> list[tuple[int, int]]:
        return [(row, digests[bytes(d)]) for row, d in enumerate(np.asarray(u)) if bytes(d) in digests]

    def values(at: int, pair_keys: Any, u: Any, bits: Any, codes: Any = None) -> bytes:
        ints = masks.values_to_ints(masks.values_from_bytes(values_of(at, pair_keys, u, bits, codes)))
        for row, shift in rows(u):
            ints[row] = (ints[row] + shift) % 2**128
        return masks.values_to_bytes(masks.values_from_ints(ints))

    def exponents(at: int, pair_keys: Any, u: Any, bits: Any, codes: Any = None) -> list[int]:
        out = exponents_of(at, pair_keys, u, bits, codes)
        for row, shift in rows(u):
            out[row] = (out[row] + shift) % rr.GROUP_ORDER
        return out

    company_steps.masked_values = values  # type: ignore[assignment]
    rr.exponent_values = exponents  # type: ignore[assignment]


if __name__ == "__main__":
    pairs = [item.split("=", 1) for item in sys.argv[1].split(",")]
    _install({pid: int(shift) for pid, shift in pairs})
    sys.exit(main(sys.argv[2:]))
