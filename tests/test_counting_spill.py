"""Counting in bucket files (coordinator/buckets.py) against counting in memory.

The two paths must give the same tables, the same undecodable count and the same failure
(reason and party) on any final lists: tokens in 1 to k lists, sums that do not decode,
groups, repeated tokens and tags, tags that do not open, lists whose tokens and tags differ in
number. The bucket files must hold nothing readable and be gone when counting ends, however
it ends. The coordinator's own counting call runs the bucket path with a tiny budget.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monoculture.coordinator import buckets
from monoculture.coordinator.buckets import Partition, SpillPlan, SpillStats, Stream, bucket_of
from monoculture.coordinator.counting import (
    FinalList,
    GroupedCounts,
    count_group_patterns,
    count_patterns,
    count_rerandomised,
)
from monoculture.core import rerandomise as rr
from monoculture.core.errors import ProtocolError
from monoculture.core.masks import values_from_ints, values_to_bytes
from monoculture.core.psi_crypto import POINT_SIZE, TAG_SIZE, CompanyTags, TagOpener, TagSealer

ROUND = "r-spill"
NAMES = ("alpha", "beta", "gamma", "delta")
LABELS = ("north", "south", "east")
FAULTS = ("none", "token repeat", "tag repeat", "tag altered", "count mismatch", "two lists")


@dataclass
class Built:
    roster: tuple[str, ...]
    finals: list[FinalList]
    openers: dict[str, CompanyTags]
    groups_from: str = ""


class Parts:
    """A final list handed out in parts of `size` tokens (as the store hands out chunks)."""

    def __init__(self, final: FinalList, size: int) -> None:
        self.final, self.part = final, size

    @property
    def owner(self) -> str:
        return self.final.owner

    @property
    def size(self) -> int:
        return self.final.size

    def blocks(self) -> Iterator[FinalList]:
        for at in range(0, max(1, self.size, len(self.final.tags)), self.part):
            tokens = self.final.tokens[at * POINT_SIZE : (at + self.part) * POINT_SIZE]
            yield FinalList(self.owner, tokens, self.final.tags[at : at + self.part])


def _masked_round(seed: int, k: int, groups: bool, fault: str) -> Built:
    """Random final lists with sealed masked values: every token in 1 to k lists, a share of the
    shared sums spoilt (undecodable), and `fault` done to one or two lists."""
    rng = np.random.default_rng(seed)
    roster = NAMES[:k]
    groups_from = roster[int(rng.integers(k))] if groups else ""
    universe = [
        bytes(rng.integers(0, 256, POINT_SIZE, dtype=np.uint8)) for _ in range(int(rng.integers(5, 60)))
    ]
    held: dict[str, list[tuple[bytes, int]]] = {name: [] for name in roster}
    for token in universe:
        members = [n for n in roster if rng.random() < 0.7] or [roster[int(rng.integers(k))]]
        bits = {n: int(rng.integers(2)) for n in roster}
        code = int(rng.integers(len(LABELS) + (1 if rng.random() < 0.1 else 0)))  # sometimes past the labels
        lanes = sum(bits[n] << 2 * (k - 1 - i) for i, n in enumerate(roster))
        total = lanes | (code << 2 * k if groups else 0)
        shares = [int.from_bytes(rng.bytes(16), "big") for _ in roster[1:]]
        first = (total - sum(shares)) % 2**128
        if rng.random() < 0.1:
            first = (first + 2 * 4 ** int(rng.integers(k))) % 2**128  # a lane of 2 or 3: undecodable
        values = dict(zip(roster, [first, *shares], strict=True))
        for name in members:
            value = values[name] if len(members) == k else int.from_bytes(rng.bytes(16), "big")
            held[name].append((token, value))
    opener = TagOpener()
    finals, openers = [], {}
    for name in roster:
        labels = LABELS if name == groups_from else ()
        sealer = TagSealer(ROUND, name, opener.public_key, group_labels=labels)
        openers[name] = opener.opener_for(ROUND, name, sealer.public_key, labels)
        rows = [held[name][i] for i in rng.permutation(len(held[name]))]
        tags = sealer.seal(values_to_bytes(values_from_ints(v for _, v in rows)))
        tag_rows = np.frombuffer(bytes(tags), dtype=np.uint8).reshape(-1, TAG_SIZE)
        finals.append(FinalList(name, b"".join(t for t, _ in rows), tag_rows))
    for victim in _victims(rng, k, fault):
        finals[victim] = _spoilt(finals[victim], fault if fault != "two lists" else _one_fault(rng), rng)
    return Built(roster, finals, openers, groups_from)


def _victims(rng: np.random.Generator, k: int, fault: str) -> list[int]:
    if fault == "none":
        return []
    if fault == "two lists":
        return sorted(int(v) for v in rng.choice(k, 2, replace=False))
    return [int(rng.integers(k))]


def _one_fault(rng: np.random.Generator) -> str:
    return str(FAULTS[1 + int(rng.integers(4))])


def _spoilt(final: FinalList, fault: str, rng: np.random.Generator) -> FinalList:
    tokens = np.frombuffer(final.tokens, dtype=np.uint8).reshape(-1, POINT_SIZE).copy()
    tags = final.tags.copy()
    if len(tags) < 2:
        tokens, tags = np.concatenate([tokens, tokens]), np.concatenate([tags, tags])
        return FinalList(final.owner, tokens.tobytes(), tags)  # a token and its tag repeat
    a, b = (int(x) for x in rng.choice(len(tags), 2, replace=False))
    if fault == "token repeat":
        tokens[b] = tokens[a]
    elif fault == "tag repeat":
        tags[b] = tags[a]
    elif fault == "tag altered":
        tags[a, -1] ^= 1
    elif fault == "count mismatch":
        tags = np.delete(tags, b, axis=0)
    return FinalList(final.owner, tokens.tobytes(), tags)


def _outcome(call: object) -> tuple[str, object]:
    try:
        counted = call()  # type: ignore[operator]
    except ProtocolError as exc:
        return "failed", (str(exc), exc.where)
    assert isinstance(counted, GroupedCounts)
    return "counted", counted


def _masked(built: Built, spill: SpillPlan | None, part: int = 0) -> tuple[str, object]:
    finals = [Parts(f, part) for f in built.finals] if part else built.finals
    if built.groups_from:
        return _outcome(
            lambda: count_group_patterns(
                built.roster, finals, built.openers, built.groups_from, LABELS, spill=spill
            )
        )
    return _outcome(lambda: count_patterns(built.roster, finals, built.openers, spill=spill))


def _tiny(folder: Path, built_sizes: list[int], buckets_wanted: int = 8) -> SpillPlan:
    """A budget that sends these lists to about `buckets_wanted` buckets."""
    total = sum(built_sizes)
    memory = min(
        total * buckets.BUCKET_BYTES_PER_ROW // buckets_wanted, total * buckets.MEMORY_BYTES_PER_TOKEN - 1
    )
    return SpillPlan(folder, max(1, memory), SpillStats())


def _leftovers(folder: Path) -> list[Path]:
    return list(folder.glob("counting-*"))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    k=st.integers(2, 4),
    groups=st.booleans(),
    fault=st.sampled_from(FAULTS),
    wanted=st.sampled_from([2, 8, 64]),
    part=st.sampled_from([0, 1, 7]),
)
def test_buckets_count_as_memory_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, k: int, groups: bool, fault: str, wanted: int,
    part: int,
) -> None:  # fmt: skip
    monkeypatch.setattr(buckets, "FLUSH_ROWS", 5)  # several spreads per list
    built = _masked_round(seed, k, groups, fault)
    plan = _tiny(tmp_path, [f.size for f in built.finals], wanted)
    assert plan.buckets([f.size for f in built.finals]) > 0
    in_memory = _masked(built, None)
    spilled = _masked(built, plan, part)
    assert spilled == in_memory
    if fault == "none":
        assert in_memory[0] == "counted"
    assert not _leftovers(tmp_path)


def test_the_fault_raised_is_the_first_lists_first_check(tmp_path: Path) -> None:
    """Two faulty lists: both paths name the earlier list in the roster, whichever bucket the
    later list's fault falls in."""
    built = _masked_round(11, 3, False, "none")
    built.finals[2] = _spoilt(built.finals[2], "tag altered", np.random.default_rng(1))
    built.finals[1] = _spoilt(built.finals[1], "tag repeat", np.random.default_rng(2))
    plan = _tiny(tmp_path, [f.size for f in built.finals], 64)
    outcome = _masked(built, plan)
    assert outcome == _masked(built, None)
    assert outcome[0] == "failed" and "beta: a failure tag repeats" in str(outcome[1])


def test_an_untouched_round_is_exact(tmp_path: Path) -> None:
    """A known table: every token in every list, no spoilt sum."""
    k, n = 3, 300
    opener = TagOpener()
    rng = np.random.default_rng(5)
    bits = rng.integers(0, 2, size=(k, n))
    tokens = [os.urandom(POINT_SIZE) for _ in range(n)]
    shares = [[int.from_bytes(os.urandom(16), "big") for _ in range(n)] for _ in range(k - 1)]
    lanes = [sum(int(bits[i, j]) << 2 * (k - 1 - i) for i in range(k)) for j in range(n)]
    first = [(lanes[j] - sum(s[j] for s in shares)) % 2**128 for j in range(n)]
    finals, openers = [], {}
    for name, values in zip(NAMES[:k], [first, *shares], strict=True):
        sealer = TagSealer(ROUND, name, opener.public_key)
        openers[name] = opener.opener_for(ROUND, name, sealer.public_key)
        tags = np.frombuffer(bytes(sealer.seal(values_to_bytes(values_from_ints(values)))), np.uint8)
        finals.append(FinalList(name, b"".join(tokens), tags.reshape(n, TAG_SIZE)))
    plan = _tiny(tmp_path, [n] * k, 16)
    counted = count_patterns(NAMES[:k], finals, openers, spill=plan)
    patterns = np.array([sum(int(bits[i, j]) << (k - 1 - i) for i in range(k)) for j in range(n)])
    assert counted.table.counts == tuple(int(np.count_nonzero(patterns == p)) for p in range(8))
    assert counted.undecodable == 0
    assert plan.stats is not None and plan.stats.buckets == 16
    assert plan.stats.disk_bytes == k * n * (POINT_SIZE + TAG_SIZE + 12)  # token, tag, nonce: 89 B
    assert not _leftovers(tmp_path)


# ------------------------------------------------------------------ re-randomised tags


def _rerandomised_round(seed: int, lonely: int) -> tuple[tuple[str, ...], list[FinalList], rr.CoordinatorKey]:
    """k = 3 lists of 10 shared individuals (one sum shifted: undecodable) and `lonely` tokens
    each in one list only, with valid tags."""
    rng = np.random.default_rng(seed)
    roster = NAMES[:3]
    n = 10
    key = rr.CoordinatorKey(os.urandom(32))
    bits = rng.integers(0, 2, size=(3, n))
    shares = [[int(rng.integers(0, 2**62)) for _ in range(n)] for _ in range(2)]
    lanes = [sum(int(bits[i, j]) << 2 * (2 - i) for i in range(3)) for j in range(n)]
    first = [lanes[j] - shares[0][j] - shares[1][j] + (2 if j == 0 else 0) for j in range(n)]
    tokens = [os.urandom(POINT_SIZE) for _ in range(n)]
    finals = []
    for name, values in zip(roster, [first, *shares], strict=True):
        extra = [os.urandom(POINT_SIZE) for _ in range(lonely)]
        numbers = values + [int(rng.integers(0, 2**62)) for _ in range(lonely)]
        tags = rr.encrypt(
            key.public_key, rr.scalars(numbers), rr.scalars(rr.randomisers(None, b"", len(numbers)))
        )
        rows = np.frombuffer(tags, np.uint8).reshape(-1, rr.ELGAMAL_TAG_SIZE)
        order = rng.permutation(len(numbers))
        all_tokens = tokens + extra
        finals.append(FinalList(name, b"".join(all_tokens[i] for i in order), rows[order]))
    return roster, finals, key


@pytest.mark.parametrize("lonely", [0, 6])
def test_rerandomised_buckets_count_and_decrypt_as_memory_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lonely: int
) -> None:
    """The same table, and as many sums decrypted as the smallest list holds (the timing
    defence): the shared ones and, bucket by bucket and then over the lists, padding."""
    roster, finals, key = _rerandomised_round(3, lonely)
    decrypted: list[int] = []
    original = rr.CoordinatorKey.decrypt_sums

    def counting(self: rr.CoordinatorKey, columns: list[bytes], table: rr.SumTable, threads: int = 0):  # type: ignore[no-untyped-def]
        decrypted.append(len(columns[0]) // rr.ELGAMAL_TAG_SIZE)
        return original(self, columns, table, threads)

    monkeypatch.setattr(rr.CoordinatorKey, "decrypt_sums", counting)
    in_memory = count_rerandomised(roster, finals, key)
    assert sum(decrypted) == 10 + lonely
    decrypted.clear()
    plan = _tiny(tmp_path, [f.size for f in finals], 8)
    assert count_rerandomised(roster, finals, key, spill=plan) == in_memory
    assert sum(decrypted) == 10 + lonely
    assert in_memory.undecodable == 1
    assert not _leftovers(tmp_path)


def test_a_torsion_point_fails_both_paths_naming_the_last_relay(tmp_path: Path) -> None:
    roster, finals, key = _rerandomised_round(4, 2)
    marked = finals[1].tags.copy()
    marked[3, rr.POINT_BYTES :] = np.frombuffer(
        rr.sodium.crypto_core_ed25519_add(marked[3, rr.POINT_BYTES :].tobytes(), _torsion()), np.uint8
    )
    finals[1] = FinalList(finals[1].owner, finals[1].tokens, marked)
    plan = _tiny(tmp_path, [f.size for f in finals], 8)
    outcomes = [_outcome(lambda s=s: count_rerandomised(roster, finals, key, spill=s)) for s in (None, plan)]
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == "failed" and outcomes[0][1][1] == "alpha"  # type: ignore[index]
    assert not _leftovers(tmp_path)


def _torsion() -> bytes:
    """A point of order 2 on edwards25519 (y = -1)."""
    return bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")


# ------------------------------------------------------------------ the files


def test_bucket_files_hold_no_token_in_the_clear_and_go_when_counting_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = _masked_round(21, 3, False, "none")
    seen: list[bytes] = []
    close_list = Partition.close_list

    def looking(self: Partition, index: int) -> None:
        close_list(self, index)
        seen.extend(p.read_bytes() for p in self.folder.iterdir())
        assert all(p.stat().st_mode & 0o077 == 0 for p in self.folder.iterdir())
        assert self.folder.stat().st_mode & 0o077 == 0

    monkeypatch.setattr(Partition, "close_list", looking)
    plan = _tiny(tmp_path, [f.size for f in built.finals], 4)
    count_patterns(built.roster, built.finals, built.openers, spill=plan)
    assert seen and not _leftovers(tmp_path)
    blob = b"".join(seen)
    for final in built.finals:
        for at in range(0, len(final.tokens), POINT_SIZE):
            assert final.tokens[at : at + POINT_SIZE] not in blob
        for tag in final.tags:
            assert tag.tobytes() not in blob

    class Broken(Parts):
        def blocks(self) -> Iterator[FinalList]:
            yield from super().blocks()
            raise OSError("the store went away")

    finals = [*built.finals[:2], Broken(built.finals[2], 3)]
    with pytest.raises(OSError, match="went away"):
        count_patterns(built.roster, finals, built.openers, spill=plan)
    assert not _leftovers(tmp_path)


def test_leftovers_of_a_crash_are_removed(tmp_path: Path) -> None:
    partition = Partition(tmp_path, 4, 1, [Stream("tokens", 4, 4)])
    partition.add(0, "tokens", np.arange(40, dtype=np.uint8).reshape(10, 4))
    partition.close_list(0)
    assert len(_leftovers(tmp_path)) == 1
    (tmp_path / "counting-not-a-folder").write_text("kept")
    buckets.remove_leftovers(tmp_path)
    assert [p.name for p in _leftovers(tmp_path)] == ["counting-not-a-folder"]


def test_buckets_are_balanced_and_keyed() -> None:
    """Tokens sharing every byte but the last still spread (the bucket is a keyed PRF of the
    whole token, not its prefix), and another key puts them elsewhere."""
    tokens = np.zeros((4096, POINT_SIZE), dtype=np.uint8)
    tokens[:, -2:] = np.arange(4096, dtype=">u2").view(np.uint8).reshape(-1, 2)
    first, second = bucket_of(os.urandom(32), tokens, 16), bucket_of(os.urandom(32), tokens, 16)
    counts = np.bincount(first, minlength=16)
    assert counts.min() > 4096 / 16 / 2 and counts.max() < 4096 / 16 * 2
    assert not np.array_equal(first, second)


def test_the_plan_counts_small_rounds_in_memory() -> None:
    plan = SpillPlan(Path("/nonexistent"), 256 * 2**20)
    assert plan.buckets([300_000] * 3) == 0
    assert plan.buckets([1_000_000] * 3) == 8
    assert plan.buckets([10_000_000] * 3) == 64
    assert plan.buckets([10**9] * 3) == buckets.MAX_BUCKETS


# ------------------------------------------------------------------ the coordinator's own call


def test_the_coordinator_counts_in_buckets_under_a_tiny_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole round through the coordinator's normal counting call, with a budget that sends
    every round to bucket files: exact, and no files left in the coordinator's folder."""
    from support.harness import Harness
    from test_round_logic import _assert_exact, _population

    closed: list[int] = []
    close_list = Partition.close_list

    def counted(self: Partition, index: int) -> None:
        closed.append(self.buckets)
        close_list(self, index)

    monkeypatch.setattr(Partition, "close_list", counted)
    population = _population()
    harness = Harness(tmp_path, population, counting_memory=2000)
    try:
        round_id = harness.open_round()
        harness.run(round_id)
        _assert_exact(harness, round_id, population)
        assert len(closed) == 3 and closed[0] > 1  # the three lists went to bucket files
        assert not _leftovers(harness.store.path.parent)
    finally:
        harness.close()
