"""Masked tags (core/masks.py): counting through masks equals plaintext counting; a value or
partial sum is uniform; a swap, move, replay or lane shift fails the decode; the coordinator
with one company unmasks nothing at k >= 3 (and what it does get, pinned); key confirmation.

Data come from fixed seeds; keys are fresh every run (os.urandom), as in a round. The
statistical assertions state their false-alarm rate where they have one.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from scipy.stats import chi2

from monoculture.analysis.table import count_patterns, pattern_indices
from monoculture.core import masks
from monoculture.core.dataset import DuplicatePolicy, InputSpec, load_records
from monoculture.core.errors import ProtocolError
from monoculture.core.masks import Values
from monoculture.core.psi_crypto import x25519_key
from monoculture.core.relay import RelayPeer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "api-predictions"
MOD = 2**128


# ------------------------------------------------------------------ a round's keys


@dataclass
class Round:
    round_id: str
    roster: list[str]
    private: dict[str, bytes]
    peers: list[RelayPeer]
    transcript: bytes
    keys: list[dict[int, bytes]]  # by position: the company's key with every other position

    @property
    def k(self) -> int:
        return len(self.roster)


def _public(private: bytes) -> bytes:
    return x25519_key(private).public_key().public_bytes_raw()


def new_round(k: int, round_id: str = "r-0123456789abcdef", private: dict[str, bytes] | None = None) -> Round:
    """Every company's fresh relay key, signed keys (the signature is opaque here), the
    transcript and every company's pairwise keys, each derived on its own side."""
    roster = [f"company-{i:02d}" for i in range(k)]
    private = private or {name: os.urandom(32) for name in roster}
    peers = [RelayPeer(n, _public(private[n]), os.urandom(32), b"", os.urandom(70)) for n in roster]
    transcript = masks.transcript_digest(round_id, roster, peers)
    public = {p.company: p.relay_public_key for p in peers}
    keys = [
        masks.pair_keys(
            private[name], name, {n: public[n] for n in roster if n != name}, transcript, round_id, roster
        )
        for name in roster
    ]
    return Round(round_id, roster, private, peers, transcript, keys)


def company_values(
    rnd: Round, position: int, ids: Sequence[str], bits: npt.ArrayLike, codes: npt.ArrayLike | None = None
) -> Values:
    """What company `position`'s tags seal, as the coordinator reads them after opening."""
    blob = masks.masked_values(position, rnd.keys[position], masks.id_digests(ids), bits, codes)
    assert len(blob) == 16 * len(ids)
    return masks.values_from_bytes(blob)


def total(values: Sequence[Values]) -> Values:
    out = values[0]
    for v in values[1:]:
        out = masks.add_values(out, v)
    return out


# ------------------------------------------------------------------ counting


@dataclass
class CompanyList:
    ids: list[str]
    bits: npt.NDArray[np.uint8]
    codes: npt.NDArray[np.int64] | None = None


def counts_both_ways(
    rnd: Round, lists: list[CompanyList], groups_from: int | None, group_count: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int]:
    """(masked counts, plaintext counts, shared individuals): per group code, per pattern.
    The coordinator's side adds the k values of every id held by all k companies (ids stand
    for the fully blinded tokens) and decodes; the plaintext side reads the bits."""
    k = rnd.k
    values = [
        company_values(rnd, i, c.ids, c.bits, c.codes if i == groups_from else None)
        for i, c in enumerate(lists)
    ]
    shared = sorted(set.intersection(*(set(c.ids) for c in lists)))
    where = [{x: n for n, x in enumerate(c.ids)} for c in lists]
    positions = [np.array([w[x] for x in shared], dtype=np.int64) for w in where]
    patterns, codes, ok = masks.decode_sums(
        total([v[p] for v, p in zip(values, positions, strict=True)]), k, group_count
    )
    assert ok.all(), f"{int((~ok).sum())} of {len(shared)} honest sums refused"
    cells = max(group_count, 1) * 2**k
    masked = np.bincount(codes * 2**k + patterns, minlength=cells).reshape(-1, 2**k)
    plain_patterns = pattern_indices([c.bits[p] for c, p in zip(lists, positions, strict=True)])
    plain_codes = (
        np.zeros(len(shared), np.int64)
        if groups_from is None
        else np.asarray(lists[groups_from].codes)[positions[groups_from]].astype(np.int64)
    )
    plain = np.bincount(plain_codes * 2**k + plain_patterns, minlength=cells).reshape(-1, 2**k)
    overall = count_patterns([c.bits[p] for c, p in zip(lists, positions, strict=True)])
    assert np.array_equal(plain.sum(axis=0), overall)
    return masked, plain, len(shared)


def random_lists(k: int, groups: bool, seed: int) -> tuple[list[CompanyList], int | None, int]:
    """k companies over 2,000 people (ids ASCII and beyond), each holding a person with
    probability 0.93; correlated failures at different rates; group codes 0..126."""
    rng = np.random.default_rng(seed)
    people = [f"person-{n}" if n % 3 else f"personne-{n}-é東😀" for n in range(2000)]
    base = rng.random(len(people)) < 0.3
    groups_from = k // 2 if groups else None
    group_count = 127 if groups else 0
    codes_all = rng.integers(0, 127, len(people))
    lists = []
    for i in range(k):
        held = np.flatnonzero(rng.random(len(people)) < 0.93)
        rng.shuffle(held)
        flip = rng.random(len(people)) < 0.1 + 0.02 * i
        bits = (base ^ flip).astype(np.uint8)
        lists.append(
            CompanyList([people[n] for n in held], bits[held], codes_all[held] if i == groups_from else None)
        )
    return lists, groups_from, group_count


@pytest.mark.parametrize("groups", [False, True], ids=["no groups", "127 groups"])
@pytest.mark.parametrize("k", range(2, 17))
def test_masked_counting_equals_plaintext_counting_on_random_data(k: int, groups: bool) -> None:
    lists, groups_from, group_count = random_lists(k, groups, seed=k)
    masked, plain, shared = counts_both_ways(new_round(k), lists, groups_from, group_count)
    assert shared > 200 and np.count_nonzero(plain) >= min(2**k, 20)  # not a vacuous comparison
    assert np.array_equal(masked, plain)


def _real(folder: str, name: str, group_column: str | None = None) -> CompanyList:
    # command repeats ids (a real case kept for that): read with an explicit policy.
    policy = DuplicatePolicy.ANY_FAILED if folder == "command" else DuplicatePolicy.REFUSE
    spec = InputSpec(EXAMPLES / folder / f"{name}.csv", duplicates=policy, group_column=group_column)
    records = load_records(spec, groups=group_column is not None)
    codes = None
    if records.groups is not None:
        codes = records.groups.round_codes(sorted(records.groups.labels)).astype(np.int64)
    return CompanyList(list(records.ids), records.failed.copy(), codes)


REAL = {
    "digit": ["github", "google", "ibm", "microsoft"],
    "ferplus": ["facepp", "github", "google", "microsoft"],
    "waimai": ["amazon", "baidu", "github", "google"],
    "command": ["google", "microsoft"],
}


@pytest.mark.parametrize("folder", sorted(REAL))
def test_masked_counting_equals_plaintext_counting_on_real_data(folder: str) -> None:
    lists = [_real(folder, name) for name in REAL[folder]]
    masked, plain, shared = counts_both_ways(new_round(len(lists)), lists, None, 0)
    assert shared > 1000 and np.count_nonzero(plain) > 2
    assert np.array_equal(masked, plain)


def test_masked_counting_equals_plaintext_counting_on_real_data_with_groups() -> None:
    """The digit companies, google with the speaker of every recording as its group (4 labels)."""
    names = REAL["digit"]
    lists = [_real("digit-speaker", n, "speaker") if n == "google" else _real("digit", n) for n in names]
    at = names.index("google")
    masked, plain, shared = counts_both_ways(new_round(len(lists)), lists, at, 4)
    assert shared == 2000 and (plain.sum(axis=1) == 500).all()  # 500 recordings per speaker
    assert np.array_equal(masked, plain)


@pytest.mark.parametrize("k", [5, 8, 16])
def test_masked_counting_equals_plaintext_counting_with_real_bits_at_larger_k(k: int) -> None:
    """Real failure bits beyond the 4 companies of a folder: company i is the digit company
    i mod 4 holding a random 95% of its recordings (fixed seed), google's speakers as groups."""
    rng = np.random.default_rng(k)
    names = REAL["digit"]
    real = [_real("digit-speaker", n, "speaker") if n == "google" else _real("digit", n) for n in names]
    lists = []
    for i in range(k):
        source = real[i % 4]
        keep = np.flatnonzero(rng.random(len(source.ids)) < 0.95)
        lists.append(
            CompanyList(
                [source.ids[n] for n in keep],
                source.bits[keep],
                None if source.codes is None else source.codes[keep],
            )
        )
    groups_from = names.index("google")
    masked, plain, shared = counts_both_ways(new_round(k), lists, groups_from, 4)
    assert shared > 300
    assert np.array_equal(masked, plain)


# ------------------------------------------------------------------ the arithmetic


@pytest.mark.parametrize("k", [2, 3, 16])
def test_the_masks_of_one_id_sum_to_zero(k: int) -> None:
    rnd = new_round(k)
    u = masks.id_digests([f"id-{n}" for n in range(500)] + ["", "é", "x" * 1024])
    every = [masks.masks(i, rnd.keys[i], u) for i in range(k)]
    assert not total(every).any()
    assert all(np.count_nonzero(m) == m.size for m in every[:2])  # each mask itself is not zero


def test_128_bit_addition_and_subtraction_carry_across_the_halves() -> None:
    edges = [0, 1, 2**64 - 1, 2**64, 2**64 + 1, 2**127, MOD - 1]
    rng = np.random.default_rng(0)
    randoms = [int.from_bytes(rng.bytes(16), "big") for _ in range(200)]
    a_ints = [a for a in edges for _ in edges] + randoms
    b_ints = [b for _ in edges for b in edges] + randoms[::-1]
    a, b = masks.values_from_ints(a_ints), masks.values_from_ints(b_ints)
    assert masks.values_to_ints(masks.add_values(a, b)) == [
        (x + y) % MOD for x, y in zip(a_ints, b_ints, strict=True)
    ]
    assert masks.values_to_ints(masks.sub_values(a, b)) == [
        (x - y) % MOD for x, y in zip(a_ints, b_ints, strict=True)
    ]
    assert masks.values_to_bytes(a) == b"".join(x.to_bytes(16, "big") for x in a_ints)


def test_id_digests_are_the_first_16_bytes_of_sha256_over_length_and_utf8() -> None:
    ids = ["DIGIT_0_jackson_0.wav", "Île-de-France", "e\u0301", "é", "0", "a b"]
    expected = [hashlib.sha256(len(x.encode()).to_bytes(8, "big") + x.encode()).digest()[:16] for x in ids]
    got = masks.id_digests(ids)
    assert got.shape == (len(ids), 16) and got.dtype == np.uint8
    assert [bytes(row) for row in got] == expected
    assert bytes(got[2]) != bytes(got[3])  # no Unicode normalisation: the bytes as hashed to the curve
    assert masks.id_digests([]).shape == (0, 16)


def test_id_digests_of_loaded_records_are_over_the_ids_as_stored() -> None:
    records = load_records(InputSpec(EXAMPLES / "waimai" / "baidu.csv"))
    ids = list(records.ids)
    assert np.array_equal(masks.id_digests(records.ids), masks.id_digests(ids))


def test_decode_sums_accepts_exactly_the_valid_encodings() -> None:
    k, groups = 3, 5
    valid = {
        code * 4**k + sum(((p >> (k - 1 - i)) & 1) * 4 ** (k - 1 - i) for i in range(k)): (p, code)
        for p in range(2**k)
        for code in range(groups)
    }
    candidates = [*range(4 ** (k + 1) * 2), 2**64, 2**64 + 1, MOD - 1, 2**127 + 5]
    patterns, codes, ok = masks.decode_sums(masks.values_from_ints(candidates), k, groups)
    for value, p, c, good in zip(candidates, patterns.tolist(), codes.tolist(), ok.tolist(), strict=True):
        if value in valid:
            assert good and (p, c) == valid[value], value
        else:
            assert not good and p == c == -1, value
    assert int(ok.sum()) == len(valid) == 2**k * groups
    # Without groups only code 0 passes.
    assert masks.decode_sums(masks.values_from_ints([4**k]), k, 0)[2].tolist() == [False]
    assert masks.decode_sums(masks.values_from_ints([int("01" * k, 2)]), k, 0)[2].tolist() == [True]


def test_bad_inputs_are_refused() -> None:
    rnd = new_round(3)
    u = masks.id_digests(["a", "b"])
    with pytest.raises(ValueError):
        masks.masks(0, {2: rnd.keys[0][2]}, u)  # the key with position 1 missing
    with pytest.raises(ValueError):
        masks.masks(0, {0: rnd.keys[0][1], 1: rnd.keys[0][1], 2: rnd.keys[0][2]}, u)  # its own position
    with pytest.raises(ValueError):
        masks.lane_values(0, 3, [0, 2])  # not a bit
    with pytest.raises(ValueError):
        masks.lane_values(0, 3, [0, 1], [0, 127])  # a code beyond 126
    with pytest.raises(ValueError):
        masks.lane_values(3, 3, [0, 1])  # no such position
    with pytest.raises(ValueError):
        masks.masked_values(0, rnd.keys[0], u, [0, 1, 1])  # one bit too many
    with pytest.raises(ValueError):
        masks.values_from_bytes(bytes(17))
    with pytest.raises(ValueError):
        masks.decode_sums(masks.values_from_ints([0]), 17)


# ------------------------------------------------------------------ uniformity


def _byte_slice_p_values(values: Values) -> list[float]:
    """Chi-square p-value of each of the 16 bytes (8-bit slices) of the values against uniform."""
    raw = np.frombuffer(masks.values_to_bytes(values), dtype=np.uint8).reshape(-1, 16)
    expected = len(raw) / 256
    out = []
    for column in raw.T:
        counts = np.bincount(column, minlength=256)
        out.append(float(chi2.sf(((counts - expected) ** 2 / expected).sum(), 255)))
    return out


UNIFORMITY_ALARM = 1e-6  # the chance that a run of this test fails on uniform values


def test_a_single_value_and_every_partial_sum_are_uniform() -> None:
    """k = 4, 4,096 ids each held by every company but counted only over a proper subset (as
    a token missing from one list): the values of every single company and the sum over
    every proper subset of companies, each of their 16 bytes. Bonferroni over the 14 x 16
    tests: a run fails on truly uniform values with probability below UNIFORMITY_ALARM."""
    k, n = 4, 4096
    rng = np.random.default_rng(12)
    ids = [f"non-shared-{i}" for i in range(n)]
    bits = rng.integers(0, 2, (k, n)).astype(np.uint8)
    bits[1] = 1  # a constant lane: what it adds must be hidden as well
    codes = rng.integers(0, 127, n)
    rnd = new_round(k)
    values = [company_values(rnd, i, ids, bits[i], codes if i == 2 else None) for i in range(k)]
    subsets = [s for r in range(1, k) for s in itertools.combinations(range(k), r)]
    p_values = {s: _byte_slice_p_values(total([values[i] for i in s])) for s in subsets}
    threshold = UNIFORMITY_ALARM / (len(subsets) * 16)
    worst = min((p, s) for s, ps in p_values.items() for p in ps)
    assert worst[0] > threshold, worst
    # The full sum is the lanes: anything but uniform (the test can fail).
    assert max(_byte_slice_p_values(total(values))) < 1e-100


def test_the_uniformity_check_sees_a_small_bias() -> None:
    """Power of the check above: uniform bytes with 3% of one byte forced to 0 are flagged."""
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 256, (4096, 16), dtype=np.uint8)
    raw[: int(0.03 * 4096), 5] = 0
    biased = masks.values_from_bytes(raw.tobytes())
    assert min(_byte_slice_p_values(biased)) < UNIFORMITY_ALARM / (14 * 16)


# ------------------------------------------------------------------ integrity

K_INTEGRITY, N_INTEGRITY = 4, 4000


@pytest.fixture(scope="module")
def honest() -> tuple[Round, list[str], npt.NDArray[np.uint8], list[Values]]:
    """k = 4, 4,000 ids held by every company, balanced bits from a fixed seed."""
    rng = np.random.default_rng(7)
    ids = [f"shared-{i}" for i in range(N_INTEGRITY)]
    bits = rng.integers(0, 2, (K_INTEGRITY, N_INTEGRITY)).astype(np.uint8)
    rnd = new_round(K_INTEGRITY)
    values = [company_values(rnd, i, ids, bits[i]) for i in range(K_INTEGRITY)]
    assert masks.decode_sums(total(values), K_INTEGRITY)[2].all()
    return rnd, ids, bits, values


def _accepted(values: list[Values], group_count: int = 0) -> npt.NDArray[np.bool_]:
    return masks.decode_sums(total(values), len(values), group_count)[2]


def test_swapped_tags_fail_the_decode(
    honest: tuple[Round, list[str], npt.NDArray[np.uint8], list[Values]],
) -> None:
    _, _, _, values = honest
    pairs = np.arange(N_INTEGRITY).reshape(-1, 2)[:, ::-1].ravel()  # elements 0<->1, 2<->3, ...
    for company in range(K_INTEGRITY):
        swapped = list(values)
        swapped[company] = values[company][pairs]
        assert not _accepted(swapped).any()  # 2,000 swaps, every element of each caught


def test_a_tag_moved_to_another_list_fails_the_decode(
    honest: tuple[Round, list[str], npt.NDArray[np.uint8], list[Values]],
) -> None:
    _, _, _, values = honest
    for source, target in itertools.permutations(range(K_INTEGRITY), 2):
        same_place = list(values)
        same_place[target] = values[source]  # the same individual's tag, in another company's list
        assert not _accepted(same_place).any()
        elsewhere = list(values)
        elsewhere[target] = np.roll(values[source], 1, axis=0)  # at another individual's place
        assert not _accepted(elsewhere).any()


def test_a_tag_replayed_from_another_round_fails_the_decode(
    honest: tuple[Round, list[str], npt.NDArray[np.uint8], list[Values]],
) -> None:
    rnd, ids, bits, values = honest
    fresh = new_round(K_INTEGRITY, "r-fedcba9876543210")  # the next round: new keys
    same_keys = new_round(K_INTEGRITY, "r-fedcba9876543210", private=rnd.private)  # keys reused
    for other in (fresh, same_keys):
        for company in range(K_INTEGRITY):
            replayed = list(values)
            replayed[company] = company_values(other, company, ids, bits[company])
            assert not _accepted(replayed).any()


def test_a_missing_value_or_a_forged_sum_fails_the_decode(
    honest: tuple[Round, list[str], npt.NDArray[np.uint8], list[Values]],
) -> None:
    _, _, _, values = honest
    for left_out in range(K_INTEGRITY):
        assert not _accepted([v for i, v in enumerate(values) if i != left_out] + [values[0] * 0]).any()
    forged = masks.values_from_bytes(os.urandom(16 * 100_000))
    assert not masks.decode_sums(forged, 16, 127)[2].any()  # passes with probability 2^16 * 127 / 2^128


def test_a_lane_shift_is_caught_exactly_where_the_lane_overflows(
    honest: tuple[Round, list[str], npt.NDArray[np.uint8], list[Values]],
) -> None:
    """Company `shifter` adds +-4^(k-1-j) to its own values, moving company j's lane. It is caught
    where the lane leaves {0, 1}: for + where b_j = 1, for - where b_j = 0; so about half the
    elements on balanced bits (4,000 elements: 0.45-0.55 is over 6 standard deviations)."""
    _, _, bits, values = honest
    k = K_INTEGRITY
    for shifter, j in itertools.permutations(range(k), 2):
        step = masks.values_from_ints([4 ** (k - 1 - j)] * N_INTEGRITY)
        for sign, caught_where in ((+1, 1), (-1, 0)):
            shifted = list(values)
            add = masks.add_values if sign > 0 else masks.sub_values
            shifted[shifter] = add(values[shifter], step)
            patterns, _, ok = masks.decode_sums(total(shifted), k)
            assert np.array_equal(~ok, bits[j] == caught_where)
            assert 0.45 <= float((~ok).mean()) <= 0.55
            # Where it passes, the pattern is silently changed: company j's bit flipped.
            truth = pattern_indices(list(bits))
            assert np.array_equal(patterns[ok], truth[ok] ^ (1 << (k - 1 - j)))
        doubled = list(values)
        doubled[shifter] = masks.add_values(values[shifter], masks.add_values(step, step))
        assert not _accepted(doubled).any()  # a shift by 2 in one lane always overflows it


def test_a_lane_shift_escapes_more_often_when_the_shifted_bit_is_predictable() -> None:
    """The "caught with probability >= 1/2" of the design holds only for bits the shifter
    cannot predict: against a company failing 10% of the time, +1 in its lane passes 90%."""
    k, n = 3, 4000
    rng = np.random.default_rng(11)
    ids = [f"skewed-{i}" for i in range(n)]
    bits = (rng.random((k, n)) < 0.1).astype(np.uint8)
    rnd = new_round(k)
    values = [company_values(rnd, i, ids, bits[i]) for i in range(k)]
    values[0] = masks.add_values(values[0], masks.values_from_ints([4 ** (k - 1 - 2)] * n))
    caught = ~masks.decode_sums(total(values), k)[2]
    assert np.array_equal(caught, bits[2] == 1)
    assert 0.07 <= float(caught.mean()) <= 0.13


def test_a_shifted_group_code_is_caught_only_past_the_last_label() -> None:
    k, n, groups = 3, 2000, 10
    rng = np.random.default_rng(5)
    ids = [f"grouped-{i}" for i in range(n)]
    bits = rng.integers(0, 2, (k, n)).astype(np.uint8)
    codes = rng.integers(0, groups, n)
    rnd = new_round(k)
    values = [company_values(rnd, i, ids, bits[i], codes if i == 1 else None) for i in range(k)]
    values[2] = masks.add_values(values[2], masks.values_from_ints([4**k] * n))  # company 2: code + 1
    _, decoded, ok = masks.decode_sums(total(values), k, groups)
    assert np.array_equal(~ok, codes == groups - 1)
    assert np.array_equal(decoded[ok], codes[ok] + 1)


# ------------------------------------------------------------------ collusion


def _colluders_residual(
    rnd: Round, values: list[Values], u: masks.Digests, held: Sequence[int], c: int
) -> Values:
    """What the coordinator and company c compute for a token held by the companies `held`:
    the sum of those values minus everything c's keys explain (c's whole value when c holds
    the token, and sgn(c - i) * AES_{s_ic}(u) for every other holder i)."""
    out = total([values[i] for i in held])
    for i in held:
        if i == c:
            out = masks.sub_values(out, values[c])
        else:
            term = masks.prf(rnd.keys[c][i], u)
            out = (masks.sub_values if c > i else masks.add_values)(out, term)
    return out


@pytest.mark.parametrize("k", [3, 4, 6])
def test_the_coordinator_and_one_company_unmask_no_other_company_at_k_3_or_more(k: int) -> None:
    """Colluders: the coordinator (every value of every token) and company c (its keys with every
    peer, its own bits, every id). For every set of holders S of a token with S and c not
    covering all k companies, no bit of their residual predicts another company's bit better
    than chance (4,000 balanced bits: 0.44-0.56 is 7.6 standard deviations, 128 bits x
    targets x sets)."""
    n, c = 4000, 1
    rng = np.random.default_rng(100 + k)
    ids = [f"colluded-{i}" for i in range(n)]
    bits = rng.integers(0, 2, (k, n)).astype(np.uint8)
    rnd = new_round(k)
    values = [company_values(rnd, i, ids, bits[i]) for i in range(k)]
    u = masks.id_digests(ids)
    everyone = set(range(k))
    checked = 0
    for size in range(1, k + 1):
        for held in itertools.combinations(range(k), size):
            if set(held) | {c} == everyone:
                continue  # below: the documented exception
            residual = np.frombuffer(
                masks.values_to_bytes(_colluders_residual(rnd, values, u, held, c)), np.uint8
            )
            residual_bits = np.unpackbits(residual.reshape(n, 16), axis=1)  # (n, 128)
            for target in set(held) - {c}:
                agreement = (residual_bits == bits[target][:, None]).mean(axis=0)
                assert agreement.min() >= 0.44 and agreement.max() <= 0.56, (held, target)
                checked += 1
    assert checked >= k


@pytest.mark.parametrize("k", [2, 3, 5])
def test_what_the_coordinator_and_one_company_do_unmask(k: int) -> None:
    """Pinned, so nobody reads more into the masks: for a token held by every company but c (at
    k = 2: by the other company alone), the colluders who guess its id get the others' lanes
    exactly; a wrong guess gives a sum that fails the decode."""
    n, c = 1000, 0
    rng = np.random.default_rng(200 + k)
    ids = [f"guessed-{i}" for i in range(n)]
    bits = rng.integers(0, 2, (k, n)).astype(np.uint8)
    rnd = new_round(k)
    values = [company_values(rnd, i, ids, bits[i]) for i in range(k)]
    others = [i for i in range(k) if i != c]
    right = _colluders_residual(rnd, values, masks.id_digests(ids), others, c)
    lanes = total([masks.lane_values(i, k, bits[i]) for i in others])
    assert np.array_equal(right, lanes)
    wrong = _colluders_residual(rnd, values, masks.id_digests([f"wrong-{i}" for i in range(n)]), others, c)
    assert not masks.decode_sums(wrong, k)[2].any()


# ------------------------------------------------------------------ keys and confirmation


def test_both_sides_derive_the_same_key_and_confirmations_match() -> None:
    rnd = new_round(5)
    for i, j in itertools.permutations(range(5), 2):
        a, b = rnd.roster[i], rnd.roster[j]
        assert rnd.keys[i][j] == rnd.keys[j][i] and len(rnd.keys[i][j]) == 32
        sent = masks.key_confirmation(rnd.keys[i][j], rnd.transcript, a, b)
        assert masks.confirmation_matches(rnd.keys[j][i], rnd.transcript, a, b, sent)
        assert not masks.confirmation_matches(rnd.keys[j][i], rnd.transcript, b, a, sent)  # not reflected
    assert len({rnd.keys[i][j] for i, j in itertools.combinations(range(5), 2)}) == 10


def _confirmations(
    private: bytes, own: str, peers: list[RelayPeer], round_id: str, roster: list[str]
) -> tuple[bytes, dict[int, bytes]]:
    transcript = masks.transcript_digest(round_id, roster, peers)
    others = {p.company: p.relay_public_key for p in peers if p.company != own}
    return transcript, masks.pair_keys(private, own, others, transcript, round_id, roster)


def test_a_coordinator_handing_out_different_keys_is_caught_by_the_confirmations() -> None:
    rnd = new_round(3)
    a, b, _ = rnd.roster
    honest_b = _confirmations(rnd.private[b], b, rnd.peers, rnd.round_id, rnd.roster)
    # The coordinator gives company a its own key in place of b's (a man in the middle) ...
    mitm = os.urandom(32)
    swapped = [
        p if p.company != b else RelayPeer(b, _public(mitm), p.tag_public_key, b"", p.signature)
        for p in rnd.peers
    ]
    # ... or b's real relay key with another signature or tag key (a different transcript).
    resigned = [
        p if p.company != b else RelayPeer(b, p.relay_public_key, p.tag_public_key, b"", os.urandom(70))
        for p in rnd.peers
    ]
    for shown_to_a in (swapped, resigned):
        transcript_a, keys_a = _confirmations(rnd.private[a], a, shown_to_a, rnd.round_id, rnd.roster)
        assert transcript_a != honest_b[0]
        sent = masks.key_confirmation(keys_a[1], transcript_a, a, b)
        assert not masks.confirmation_matches(honest_b[1][0], honest_b[0], a, b, sent)
    # The roster in another order is another transcript as well.
    assert masks.transcript_digest(rnd.round_id, rnd.roster[::-1], rnd.peers) != rnd.transcript


def test_low_order_and_malformed_peer_keys_are_refused() -> None:
    rnd = new_round(3)
    a, b, _ = rnd.roster
    for bad in (bytes(32), (1).to_bytes(32, "little"), bytes(31)):
        with pytest.raises(ProtocolError) as caught:
            masks.pairwise_key(rnd.private[a], bad, rnd.transcript, rnd.round_id, a, b, rnd.roster)
        assert caught.value.where == b


def test_the_transcript_needs_exactly_the_roster_s_keys() -> None:
    rnd = new_round(3)
    assert masks.transcript_digest(rnd.round_id, rnd.roster, reversed(rnd.peers)) == rnd.transcript
    for keys in (
        rnd.peers[:2],
        rnd.peers + rnd.peers[:1],
        [*rnd.peers[:2], RelayPeer("x", b"", b"", b"", b"")],
    ):
        with pytest.raises(ValueError):
            masks.transcript_digest(rnd.round_id, rnd.roster, keys)
    assert masks.transcript_digest(rnd.round_id, rnd.roster, rnd.peers, b"groups") != rnd.transcript
