"""A company that shifts lanes of its own masked values must learn nothing from the round's
outcome beyond what the release policy allows.

The attacker is a real company daemon with valid keys that follows the protocol except for one
change: before sealing its hop-0 tags it adds a chosen shift to the masked values (or, with
re-randomised tags, to the exponents) of chosen ids. Three probes:

- **bit probe**: +4^(k-1-j) on one id x held by every company; the sum of x overflows company j's
  lane exactly when j failed x;
- **membership probe**: the attacker appends a guessed id it does not hold and puts 2 in its own
  lane; the sum overflows exactly when every other company holds the id;
- **subset count**: 2 in its own lane for a chosen subset of its ids; the number of sums that
  overflow is the size of that subset within the full intersection.

Each probe is run in two worlds that differ only in another company's data. The probe is blind
when the two worlds give the same phase, the same failure reason, the same status fields and
result keys, and exact tables (the vector the release policy is applied to) that differ by what
changing one person's record changes: one individual moved between two cells (L1 distance 2) or
added (1). What the policy then makes of that difference is the policy's guarantee (DP's epsilon,
checked in tests/test_dp_release.py; an exact release shows a changed record, as it shows one a
company makes between two rounds). And the cell that honest rounds always leave at 0, the sums
that do not decode, is never published exactly: an exact 0 or 1 there would be the bit itself
(an attacker review found that in the first version of this fix).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.harness import Harness

from monoculture.analysis import release as release_module
from monoculture.analysis.release import ReleasePolicy
from monoculture.client import company as company_steps
from monoculture.core import masks
from monoculture.core import rerandomise as rr
from monoculture.core.protocol import RoundPhase
from monoculture.core.psi_crypto import TAG_SIZE, TagSealer

NAMES = ("alpha", "beta", "gamma")
ATTACKER, VICTIM = "gamma", "alpha"  # positions 2 and 0 in the ring
K = len(NAMES)
TARGET = "person-30"  # held by every company in both worlds


def _population(victim_bit: int, guessed_held_by_all: bool = True) -> dict[str, list[tuple[str, int]]]:
    """Three overlapping lists (the full intersection: person-20..59). `victim_bit`: alpha's
    failure bit for TARGET; `guessed_held_by_all`: whether beta also holds `guessed-1`
    (alpha always does; gamma, the attacker, never)."""
    alpha = [(f"person-{i}", int(i % 2 == 0)) for i in range(60)] + [("guessed-1", 0)]
    alpha = [(pid, victim_bit if pid == TARGET else bit) for pid, bit in alpha]
    beta = [(f"person-{i}", int(i % 3 == 0)) for i in range(20, 80)]
    if guessed_held_by_all:
        beta.append(("guessed-1", 1))
    gamma = [(f"person-{i}", int(i % 5 == 0)) for i in range(10, 70)]
    return {"alpha": alpha, "beta": beta, "gamma": gamma}


@dataclass(frozen=True)
class Outcome:
    """Everything the attacker (or the auditor) observes of a round, and the exact vector the
    release policy was applied to (for the comparison; no party sees it)."""

    phase: RoundPhase
    reason: str
    blamed: str
    status_fields: tuple[str, ...]
    result_keys: tuple[str, ...]
    exact: tuple[int, ...]
    result: dict[str, Any]


@contextmanager
def shifted_values(position: int, shifts: dict[str, int]) -> Iterator[None]:
    """The attacker's daemon (ring position `position`) adds `shifts[id]` to its own masked value
    (masked tags) or exponent (re-randomised tags) of each id."""
    digests = {bytes(masks.id_digests([pid])[0]): shift for pid, shift in shifts.items()}
    original_values, original_exponents = company_steps.masked_values, rr.exponent_values

    def rows(u: Any) -> list[tuple[int, int]]:
        return [(row, digests[bytes(d)]) for row, d in enumerate(np.asarray(u)) if bytes(d) in digests]

    def values(at: int, pair_keys: Any, u: Any, bits: Any, codes: Any = None) -> bytes:
        out = original_values(at, pair_keys, u, bits, codes)
        if at != position:
            return out
        ints = masks.values_to_ints(masks.values_from_bytes(out))
        for row, shift in rows(u):
            ints[row] = (ints[row] + shift) % 2**128
        return masks.values_to_bytes(masks.values_from_ints(ints))

    def exponents(at: int, pair_keys: Any, u: Any, bits: Any, codes: Any = None) -> list[int]:
        out = original_exponents(at, pair_keys, u, bits, codes)
        if at == position:
            for row, shift in rows(u):
                out[row] = (out[row] + shift) % rr.GROUP_ORDER
        return out

    company_steps.masked_values = values  # type: ignore[assignment]
    rr.exponent_values = exponents  # type: ignore[assignment]
    try:
        yield
    finally:
        company_steps.masked_values = original_values  # type: ignore[assignment]
        rr.exponent_values = original_exponents  # type: ignore[assignment]


def _observe(
    folder: Path,
    population: dict[str, list[tuple[str, int]]],
    shifts: dict[str, int],
    policy: ReleasePolicy,
    rerandomise: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> Outcome:
    exact: list[tuple[int, ...]] = []
    original = getattr(release_module, "exact_cells", None)

    def recording(*args: Any, **kwargs: Any) -> Any:
        assert original is not None
        cells = original(*args, **kwargs)
        exact.append(tuple(cells))
        return cells

    monkeypatch.setattr(release_module, "exact_cells", recording, raising=False)
    harness = Harness(folder, population, release_policy=policy)
    try:
        with shifted_values(NAMES.index(ATTACKER), shifts):
            round_id = harness.open_round(rerandomise=rerandomise)
            phase = harness.run(round_id)
        status = harness.status_message(round_id)
        result = harness.result(round_id) if phase == RoundPhase.COMPLETE else {}
    finally:
        harness.close()
    fields = tuple(
        f"{field.name}={value!r}" for field, value in status.ListFields() if field.name != "round_id"
    )
    return Outcome(
        phase,
        status.failure_reason,
        status.failed_party,
        fields,
        tuple(sorted(result)),
        exact[0] if exact else (),
        result,
    )


def _distance(a: Outcome, b: Outcome) -> int:
    assert len(a.exact) == len(b.exact) > 0
    return sum(abs(x - y) for x, y in zip(a.exact, b.exact, strict=True))


EXACT = ReleasePolicy()
DP = ReleasePolicy(mechanism="discrete-laplace", epsilon=1.0)
TAGS = [pytest.param(False, id="masked"), pytest.param(True, id="rerandomised")]


def _worlds(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    populations: tuple[dict[str, list[tuple[str, int]]], dict[str, list[tuple[str, int]]]],
    shifts: dict[str, int],
    policy: ReleasePolicy,
    rerandomise: bool,
) -> tuple[Outcome, Outcome]:
    first = _observe(tmp_path / "world-0", populations[0], shifts, policy, rerandomise, monkeypatch)
    second = _observe(tmp_path / "world-1", populations[1], shifts, policy, rerandomise, monkeypatch)
    return first, second


def _assert_same_outcome(first: Outcome, second: Outcome) -> None:
    assert first.phase == second.phase == RoundPhase.COMPLETE, (first.reason, second.reason)
    assert (first.reason, first.blamed) == (second.reason, second.blamed) == ("", "")
    assert first.status_fields == second.status_fields
    assert first.result_keys == second.result_keys
    for outcome in (first, second):
        released = outcome.result["undecodable_sums"]
        if outcome.result["noisy"]:
            assert isinstance(released, int)  # drawn by the mechanism with every other cell
        else:
            assert released is None  # an exact figure of a cell known to be 0 would be the bit
    if not first.result["noisy"]:  # exact: N moves by what one changed record moves it
        assert abs(first.result["shared_individuals"] - second.result["shared_individuals"]) <= 1


@pytest.mark.parametrize("rerandomise", TAGS)
@pytest.mark.parametrize("policy", [EXACT, DP], ids=["exact", "dp"])
def test_a_bit_probe_on_another_companys_lane_moves_one_person_at_most(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: ReleasePolicy, rerandomise: bool
) -> None:
    """gamma adds 4^(k-1-j) to its value of TARGET, j = alpha. Whether alpha failed TARGET changes
    neither the phase nor the reason, and the exact tables differ by one person moved."""
    shift = {TARGET: 4 ** (K - 1 - NAMES.index(VICTIM))}
    bit_0, bit_1 = _worlds(
        tmp_path, monkeypatch, (_population(0), _population(1)), shift, policy, rerandomise
    )
    _assert_same_outcome(bit_0, bit_1)
    assert _distance(bit_0, bit_1) == 2


@pytest.mark.parametrize("rerandomise", TAGS)
def test_a_membership_probe_of_an_id_the_company_does_not_hold_adds_one_person_at_most(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rerandomise: bool
) -> None:
    """gamma appends `guessed-1`, which it does not hold, with 2 in its own lane. Whether beta
    holds it too (alpha does) changes neither the phase nor the reason; the exact tables differ
    by one person added."""
    populations = (_population(0, guessed_held_by_all=False), _population(0, guessed_held_by_all=True))
    for population in populations:
        population[ATTACKER] = [*population[ATTACKER], ("guessed-1", 0)]
    shift = {"guessed-1": 2 * 4 ** (K - 1 - NAMES.index(ATTACKER))}
    absent, present = _worlds(tmp_path, monkeypatch, populations, shift, EXACT, rerandomise)
    _assert_same_outcome(absent, present)
    assert _distance(absent, present) == 1


def test_a_subset_count_is_only_what_the_release_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gamma puts 2 in its own lane for ten of its ids. How many of them every company holds
    (10 in one world, 7 in the other: beta drops three) changes neither the phase nor the reason;
    the exact tables differ by the three people beta's data removes, and no more."""
    subset = [f"person-{i}" for i in range(25, 35)]
    shift = {pid: 2 * 4 ** (K - 1 - NAMES.index(ATTACKER)) for pid in subset}
    fewer = _population(0)
    fewer["beta"] = [(pid, bit) for pid, bit in fewer["beta"] if pid not in subset[:3]]
    all_ten, seven = _worlds(tmp_path, monkeypatch, (_population(0), fewer), shift, EXACT, False)
    _assert_same_outcome(all_ten, seven)
    assert _distance(all_ten, seven) == 3


@contextmanager
def corrupted_tag(position: int, pid: str) -> Iterator[None]:
    """The attacker's daemon flips one byte of the sealed tag of `pid` (masked tags)."""
    digest = bytes(masks.id_digests([pid])[0])
    rows: list[int] = []
    original_values, original_seal = company_steps.masked_values, TagSealer.seal

    def values(at: int, pair_keys: Any, u: Any, bits: Any, codes: Any = None) -> bytes:
        # The daemon seals the values it just computed: the rows to spoil, for the attacker only.
        rows[:] = [row for row, d in enumerate(np.asarray(u)) if bytes(d) == digest] if at == position else []
        return original_values(at, pair_keys, u, bits, codes)

    def seal(self: TagSealer, blob: Any) -> bytearray:
        tags = original_seal(self, blob)
        for row in rows:
            tags[row * TAG_SIZE + TAG_SIZE - 1] ^= 1
        rows.clear()
        return tags

    company_steps.masked_values = values  # type: ignore[assignment]
    TagSealer.seal = seal  # type: ignore[method-assign]
    try:
        yield
    finally:
        company_steps.masked_values = original_values  # type: ignore[assignment]
        TagSealer.seal = original_seal  # type: ignore[method-assign]


def test_a_tag_that_does_not_authenticate_fails_the_round_whether_or_not_it_is_shared(
    tmp_path: Path,
) -> None:
    """An attacker review of the first version of this fix: the coordinator opened the tags of
    shared tokens only, so a tag gamma spoiled on a guessed id failed the round exactly when every
    other company held the id. Every tag of every final list is opened now, before matching."""
    outcomes = []
    for world, held in enumerate((False, True)):
        population = _population(0, guessed_held_by_all=held)
        population[ATTACKER] = [*population[ATTACKER], ("guessed-1", 0)]
        harness = Harness(tmp_path / f"world-{world}", population)
        try:
            with corrupted_tag(NAMES.index(ATTACKER), "guessed-1"):
                round_id = harness.open_round()
                phase = harness.run(round_id)
            status = harness.status(round_id)
        finally:
            harness.close()
        outcomes.append((phase, status.failure_reason, status.failed_party))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == RoundPhase.FAILED and "does not authenticate" in outcomes[0][1]
