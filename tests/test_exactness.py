"""Secure result == plaintext result, on random inputs (Must show 1).

Property tests drive every role in one process with the real crypto, state
machine and wire chunks (fast enough for many examples); the end-to-end cases
at the bottom run the same comparison through separate processes over gRPC.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES, assert_same_integers, write_csv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monoculture.analysis.metrics import result_dict
from monoculture.analysis.table import plaintext_table
from monoculture.core.dataset import InputSpec, load_records
from monoculture.research.inprocess import run_round_in_process
from monoculture.research.simulate import CompanyInput, run_round


@st.composite
def populations(draw: st.DrawFn) -> dict:
    k = draw(st.integers(2, 5))
    universe = draw(st.integers(1, 60))
    overlap = draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))
    disjoint = draw(st.booleans()) and overlap == 0.0
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    shared = rng.random(universe) < overlap
    companies = []
    for i in range(k):
        held = shared | (rng.random(universe) < 0.5)
        if not held.any():
            held[rng.integers(universe)] = True
        rate = draw(st.sampled_from([0.0, 1.0, 0.1, 0.5, 0.9]))
        failed = (rng.random(universe) < rate).astype(int)
        # Disjoint populations: ids never repeat across companies (0% overlap).
        prefix = f"c{i}-" if disjoint else ""
        rows = [(f"{prefix}id-{j}", int(failed[j])) for j in rng.permutation(np.nonzero(held)[0])]
        companies.append((f"c{i}", rows))
    return {"companies": companies}


def _write(folder: Path, population: dict) -> list[tuple[str, Path]]:
    return [(name, write_csv(folder / f"{name}.csv", rows)) for name, rows in population["companies"]]


def _plaintext(files: list[tuple[str, Path]]) -> dict:
    outcomes = [load_records(InputSpec(path)).as_mapping() for _, path in files]
    return result_dict(plaintext_table([n for n, _ in files], outcomes))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(population=populations(), chunk=st.integers(1, 40))
def test_secure_round_equals_plaintext(tmp_path: Path, population: dict, chunk: int) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    files = _write(folder, population)
    records = [(name, load_records(InputSpec(path))) for name, path in files]
    secure = result_dict(run_round_in_process(records, chunk))
    plain = _plaintext(files)
    assert_same_integers(secure, plain)
    assert secure["homogenization"] == plain["homogenization"]


def _random_files(tmp_path: Path, k: int, overlap: float, seed: int) -> list[tuple[str, Path]]:
    rng = np.random.default_rng(seed)
    universe = 400
    shared = rng.random(universe) < overlap
    files = []
    for i in range(k):
        held = shared | (rng.random(universe) < 0.4)
        failed = (rng.random(universe) < [0.0, 1.0, 0.3, 0.6, 0.2][i]).astype(int)
        # overlap 0: every company's ids are its own, so nobody is shared.
        prefix = f"c{i}-" if overlap == 0.0 else ""
        rows = [(f"{prefix}cust{j:05d}", failed[j]) for j in rng.permutation(np.nonzero(held)[0])]
        files.append((f"c{i}", write_csv(tmp_path / f"c{i}.csv", rows)))
    return files


@pytest.mark.e2e
@pytest.mark.parametrize(("k", "overlap"), [(2, 0.0), (5, 0.6)])
def test_separate_processes_equal_plaintext(tmp_path: Path, k: int, overlap: float) -> None:
    files = _random_files(tmp_path, k, overlap, seed=k)
    run = run_round([CompanyInput(n, InputSpec(p)) for n, p in files], tmp_path / "run", timeout=300)
    plain = _plaintext(files)
    assert_same_integers(run.result, plain)
    if overlap == 0.0:
        assert run.result["shared_individuals"] == 0


def test_sixteen_companies_with_groups_equal_plaintext(tmp_path: Path) -> None:
    """k = 16, the most a round takes, on real data with groups, through the real crypto in one
    process (masked tags: every shared individual's 16 values add up to its pattern and group).
    Company i holds a random 95% of the first 120 digit clips of one real API's results (the
    four APIs in turn); google's speakers define the groups (company 3 holds google's data)."""
    from monoculture.analysis.groups import plaintext_group_tables
    from monoculture.research.inprocess import run_grouped_round_in_process

    speakers = load_records(InputSpec(EXAMPLES / "digit-speaker" / "google.csv", group_column="speaker"),
                            groups=True)  # fmt: skip
    group_of = {
        speakers.ids[i]: speakers.groups.labels[speakers.groups.codes[i]] for i in range(len(speakers))
    }
    apis = ["github", "ibm", "microsoft", "google"]
    rng = np.random.default_rng(16)
    records, outcomes = [], []
    for i in range(16):
        real = load_records(InputSpec(EXAMPLES / "digit" / f"{apis[i % 4]}.csv")).as_mapping()
        ids = sorted(real)[:120]
        held = [x for x in ids if rng.random() < 0.95]
        name, path = f"c{i:02d}", tmp_path / f"c{i:02d}.csv"
        path.write_text("id,failed,speaker\n" + "".join(f"{x},{real[x]},{group_of[x]}\n" for x in held))
        records.append((name, load_records(InputSpec(path, group_column="speaker"), groups=name == "c03")))
        outcomes.append({x: real[x] for x in held})
    labels = sorted(set(group_of.values()))
    names = [name for name, _ in records]
    counted = run_grouped_round_in_process(records, "c03", labels, chunk_elements=37)
    plain = plaintext_group_tables(names, outcomes, "c03", group_of, labels)
    assert counted.groups == plain
    assert counted.table == plaintext_table(names, outcomes)
    assert (
        counted.table.counts[-1] > 0 and sum(counted.table.counts) > 20
    )  # shared individuals, all-fail ones
