"""Blinding over worker processes gives byte-for-byte what one process gives."""

from __future__ import annotations

import pytest

from monoculture.client.company import INLINE
from monoculture.client.workers import BlindingPool
from monoculture.core.psi_crypto import POINT_SIZE, BlindingKey, InvalidPoint


@pytest.fixture(scope="module")
def pool():
    pool = BlindingPool(2)
    yield pool
    pool.close()


def test_workers_equal_inline(pool: BlindingPool) -> None:
    key = BlindingKey.fresh()
    batches = [[f"id-{b}-{i}" for i in range(50)] for b in range(7)]
    hashed = list(pool.hash_and_blind(key, batches))
    assert hashed == list(INLINE.hash_and_blind(key, batches))
    other = BlindingKey.fresh()  # a new key mid-life: workers switch to it
    points = [[h[i : i + POINT_SIZE] for i in range(0, len(h), POINT_SIZE)] for h in hashed]
    assert list(pool.reblind(other, points)) == list(INLINE.reblind(other, points))


def test_workers_report_invalid_points(pool: BlindingPool) -> None:
    with pytest.raises(InvalidPoint):
        list(pool.reblind(BlindingKey.fresh(), [[b"\x05" * POINT_SIZE]]))
    # and keep working afterwards
    assert len(next(pool.hash_and_blind(BlindingKey.fresh(), [["x"]]))) == POINT_SIZE


def test_an_invalid_point_leaves_no_reply_behind(pool: BlindingPool) -> None:
    """An invalid point in one batch while the other worker holds the next batch's reply: that
    reply is drained, so the next run's batches get their own replies (before: each later
    batch got the reply of the batch before it, and rounds miscounted or hung)."""
    key = BlindingKey.fresh()
    good = next(iter(INLINE.hash_and_blind(key, [[f"id-{i}" for i in range(40)]])))
    good_points = [good[i : i + POINT_SIZE] for i in range(0, len(good), POINT_SIZE)]
    poisoned = [[b"\x05" * POINT_SIZE], good_points, good_points]  # batch 0 fails, 1 is in flight
    with pytest.raises(InvalidPoint):
        list(pool.reblind(key, poisoned))
    batches = [[f"after-{b}-{i}" for i in range(30 + b)] for b in range(5)]
    assert list(pool.hash_and_blind(key, batches)) == list(INLINE.hash_and_blind(key, batches))
