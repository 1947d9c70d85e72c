"""DP dummies in a round (issue 12; docs/PROTOCOL.md, "DP dummies"): the list sizes and the
overlaps of two companies the coordinator sees carry dummies, the result stays exact.

The in-process harness runs the real RoundBook and the real daemons (real crypto).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from conftest import assert_same_integers
from support.harness import Harness, keep_final_lists

from monoculture.analysis.budget import roster_key
from monoculture.analysis.metrics import result_dict
from monoculture.analysis.table import plaintext_table
from monoculture.core.dummies import DummyPlan
from monoculture.core.protocol import RoundPhase
from monoculture.core.psi_crypto import POINT_SIZE

POPULATION = {
    "alpha": [(f"person-{i}", int(i % 2 == 0)) for i in range(80)],
    "beta": [(f"person-{i}", int(i % 3 == 0)) for i in range(30, 110)],
    "gamma": [(f"person-{i}", int(i % 5 == 0)) for i in range(15, 95)],
}
PLAN = DummyPlan.for_round(1.0, 1e-6, 3)  # mu = 27: each padded region gets 0..54 dummies


@pytest.fixture
def finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    finals = keep_final_lists(monkeypatch)
    harness = Harness(tmp_path, POPULATION, dummies=(1.0, 1e-6))
    round_id = harness.open_round()
    assert harness.run(round_id) == RoundPhase.COMPLETE
    yield harness, round_id, finals
    harness.close()


def _regions(membership: dict[str, set[str]]) -> dict[tuple[str, ...], int]:
    """How many ids each exact set of holders has (the Venn regions)."""
    counts: dict[tuple[str, ...], int] = {}
    everyone = set().union(*membership.values())
    for x in everyone:
        holders = tuple(name for name in POPULATION if x in membership[name])
        counts[holders] = counts.get(holders, 0) + 1
    return counts


def test_the_result_stays_exact_and_the_sizes_are_padded(finished) -> None:
    harness, round_id, _ = finished
    result = harness.result(round_id)
    outcomes = [dict(rows) for rows in POPULATION.values()]
    assert_same_integers(result, result_dict(plaintext_table(list(POPULATION), outcomes)))
    padded = result["list_sizes"]
    extra = {name: padded[name] - len(rows) for name, rows in POPULATION.items()}
    # a singleton and two pair regions per company: 0..54 dummies each
    assert all(0 <= e <= 3 * 2 * PLAN.mu for e in extra.values()) and sum(extra.values()) > 0


def test_every_region_but_the_output_is_padded_by_0_to_2mu(finished) -> None:
    """The coordinator's view of the Venn regions: each of two companies or one padded, the full
    intersection (the output) exact."""
    _, _, finals = finished
    tokens = {
        name: {final.tokens[p : p + POINT_SIZE] for p in range(0, len(final.tokens), POINT_SIZE)}
        for name, final in finals.items()
    }
    seen = _regions(tokens)
    truth = _regions({name: {x for x, _ in rows} for name, rows in POPULATION.items()})
    for size in (1, 2):
        for region in itertools.combinations(POPULATION, size):
            assert 0 <= seen.get(region, 0) - truth.get(region, 0) <= 2 * PLAN.mu, region
    assert seen[tuple(POPULATION)] == truth[tuple(POPULATION)]
    assert sum(seen.values()) > sum(truth.values())


def test_a_restarted_company_declares_the_same_padded_size(tmp_path: Path) -> None:
    """The noise is drawn from sealed seeds and the pair keys: a retry reuses it (a coordinator
    failing rounds on purpose does not get fresh draws within a round)."""
    harness = Harness(tmp_path, POPULATION, dummies=(1.0, 1e-6))
    round_id = harness.open_round()
    harness.start_relaying()
    before = harness.daemons["beta"]._round(round_id)
    assert before is not None
    size = before.padded_size("beta")
    harness.restart_company("beta")
    after = harness.daemons["beta"]._round(round_id)
    assert after is not None and after.padded_size("beta") == size > len(POPULATION["beta"])
    assert harness.book._rounds[round_id].state.list_sizes["beta"] == size
    harness.close()


def test_without_dummies_the_sizes_are_exact(tmp_path: Path) -> None:
    harness = Harness(tmp_path, POPULATION)
    round_id = harness.open_round()
    assert harness.run(round_id) == RoundPhase.COMPLETE
    assert harness.result(round_id)["list_sizes"] == {name: len(rows) for name, rows in POPULATION.items()}
    harness.close()


def test_the_dummies_are_charged_to_each_companys_ledger(finished) -> None:
    """The sizes the coordinator sees are another release about the same people: each company
    charges the dummies' epsilon with the round (here an exact release, which costs 0)."""
    harness, _, _ = finished
    roster = roster_key(POPULATION)
    for name in POPULATION:
        ledger = harness.daemons[name]._ledger.ledger(roster)
        assert ledger.spent == pytest.approx(1.0) and ledger.spent_delta == pytest.approx(1e-6)


@pytest.mark.e2e
def test_simulate_with_dummies_on_real_data_is_exact(tmp_path: Path) -> None:
    """`monoculture simulate --dummy-epsilon 1`: real processes over mTLS on the digit results;
    the result equals the plaintext one, and the list sizes the coordinator saw are padded."""
    import json
    import subprocess
    import sys

    from conftest import example

    from monoculture.core.dataset import InputSpec, load_records

    names = ("google", "microsoft", "ibm")
    args = [f"--company={n}={example('digit', n)}" for n in names]
    done = subprocess.run(
        [sys.executable, "-m", "monoculture", "simulate", *args, "--dummy-epsilon", "1",
         "--out", str(tmp_path / "result.json"), "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    outcomes = [load_records(InputSpec(example("digit", n))).as_mapping() for n in names]
    assert_same_integers(result, result_dict(plaintext_table(list(names), outcomes)))
    padded = result["list_sizes"]
    assert all(padded[n] >= len(o) for n, o in zip(names, outcomes, strict=True))
    assert sum(padded.values()) > sum(len(o) for o in outcomes)
