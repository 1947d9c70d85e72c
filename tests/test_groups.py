"""Group-level homogenization (docs/PROTOCOL.md, "Groups"): per-group tables and avg / unif / worst.

- known answers of the metrics on a hand-made example, and agreement with the authors'
  definitions written out per individual (Bommasani et al., NeurIPS 2022);
- the release policy per group, and what keeps a group's withheld figures from being
  recomputed from the overall table;
- the group code travels only in the groups company's masked values (protocol v2) and is
  read only from the sum of an individual's k values; a code beyond the labels fails the round;
- real data (the digit speakers) through the in-process harness equals plaintext exactly,
  an undeclared label is refused before anything is sent, groups survive restarts;
- one end-to-end `monoculture simulate` against `monoculture plaintext` with the same flags.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import random
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from fractions import Fraction
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import EXAMPLES, assert_same_integers, example
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.harness import Harness, LinkError
from support.masking import round_pair_keys
from vectors import independent as ind

from monoculture.analysis.budget import RoundCost
from monoculture.analysis.groups import (
    group_homogenization,
    group_round_cost,
    plaintext_group_tables,
    with_groups,
)
from monoculture.analysis.metrics import result_dict
from monoculture.analysis.release import ReleasePolicy, release
from monoculture.analysis.table import PatternTable, plaintext_table
from monoculture.cli import main as cli_main
from monoculture.client.config import load_client_config
from monoculture.coordinator import rounds as coordinator_rounds
from monoculture.coordinator.counting import FinalList, count_group_patterns, whole
from monoculture.coordinator.state import RoundState
from monoculture.core import masks
from monoculture.core.dataset import GroupLabelError, InputSpec, load_records
from monoculture.core.errors import InputError, ProtocolError
from monoculture.core.protocol import Ring, RoundPhase
from monoculture.core.psi_crypto import (
    TAG_SIZE,
    BlindingKey,
    TagOpener,
    TagSealer,
    split_points,
    split_tags,
)
from monoculture.research.inprocess import run_grouped_round_in_process

SPEAKERS = ["jackson", "nicolas", "theo", "yweweler"]
DIGIT = ["google", "microsoft", "ibm"]
GROUPED_GOOGLE = EXAMPLES / "digit-speaker" / "google.csv"

# ====================================================================== the metrics


def _table(patterns: list[str], k: int = 0) -> PatternTable:
    """A pattern table from one pattern string per individual (k companies; default: as the patterns)."""
    k = k or (len(patterns[0]) if patterns else 2)
    counts = Counter(int(p, 2) for p in patterns)
    return PatternTable(tuple("abcdefgh"[:k]), tuple(counts[i] for i in range(2**k)))


def _sum(tables: list[PatternTable]) -> PatternTable:
    return PatternTable(
        tables[0].companies, tuple(int(c) for c in np.sum([t.counts for t in tables], axis=0))
    )


HAND_MADE = {  # company a's and b's bits per individual, by group
    "G1": ["11", "11", "10", "00"],  # fail_a 3/4, fail_b 1/2: product 3/8; S 1/2, H 4/3
    "G2": ["01", "00"],  # fail_a 0: product 0, H undefined
    "G3": ["11", "10"],  # fail_a 1, fail_b 1/2: product 1/2 (the worst); H 1
    "G4": [],  # declared, nobody in it
}


def _hand_made() -> dict[str, Any]:
    tables = {
        label: _table(rows) if rows else PatternTable(("a", "b"), (0, 0, 0, 0))
        for label, rows in HAND_MADE.items()
    }
    overall = _sum(list(tables.values()))
    return with_groups(result_dict(overall), overall, tables)


def test_known_answers_on_a_hand_made_example() -> None:
    # Overall N = 8, fail_a = 5/8, fail_b = 1/2: prod = 5/16.
    # unif  = mean(3/8, 0, 1/2) / (5/16) = 14/15
    # worst = (1/2) / (5/16) = 8/5, group G3
    # avg   = sum_g N_g^2 P_g / (prod * sum_g N_g^2) = (16 * 3/8 + 4 * 0 + 4 * 1/2) / (5/16 * 24) = 16/15
    result = _hand_made()
    metrics = result["group_homogenization"]
    assert metrics["unif"] == float(Fraction(14, 15))
    assert metrics["worst"] == float(Fraction(8, 5))
    assert metrics["worst_group"] == "G3"
    assert metrics["avg"] == float(Fraction(16, 15))
    assert metrics["groups_used"] == ["G1", "G2", "G3"]
    assert any("'G4' has no shared individuals" in note for note in metrics["notes"])
    assert any("'G2' the failure rate is 0 for a" in note for note in metrics["notes"])
    groups = result["groups"]
    assert groups["G1"]["homogenization"] == pytest.approx(4 / 3, rel=1e-12)
    assert groups["G2"]["homogenization"] is None and "undefined" in groups["G2"]["homogenization_note"]
    assert groups["G3"]["homogenization"] == 1.0
    assert groups["G4"]["shared_individuals"] == 0
    assert groups["G1"]["pattern_counts"] == {"00": 1, "01": 0, "10": 1, "11": 2}
    assert set(groups["G1"]) >= {"shared_individuals", "failures", "systemic_failures", "homogenization"}


def _authors_metrics(individuals: dict[str, list[tuple[int, ...]]]) -> dict[str, float]:
    """avg / unif / worst written out as Bommasani et al.'s src/homogenization.py computes them:
    per deployment, group counts, errors and frequencies over its individuals (here every
    deployment holds every individual); every group non-empty."""
    k = len(next(iter(individuals.values()))[0])
    n = sum(len(rows) for rows in individuals.values())
    stats = []
    for i in range(k):
        error_rate = sum(row[i] for rows in individuals.values() for row in rows) / n
        groups = {
            g: (len(rows) / n, sum(row[i] for row in rows) / len(rows)) for g, rows in individuals.items()
        }
        stats.append((error_rate, groups))
    global_error = math.prod(s[0] for s in stats)
    weighted = {g: math.prod(s[1][g][0] * s[1][g][1] for s in stats) for g in individuals}
    frequencies = {g: math.prod(s[1][g][0] for s in stats) for g in individuals}
    products = {g: math.prod(s[1][g][1] for s in stats) for g in individuals}
    return {
        "avg": sum(weighted.values()) / (global_error * sum(frequencies.values())),
        "unif": sum(products.values()) / len(products) / global_error,
        "worst": max(products.values()) / global_error,
    }


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(2, 4), groups=st.integers(1, 6))
def test_the_metrics_are_the_authors_definitions(seed: int, k: int, groups: int) -> None:
    rng = random.Random(seed)
    individuals = {
        f"g{g}": [
            tuple(int(rng.random() < 0.2 + 0.1 * g) for _ in range(k)) for _ in range(rng.randint(1, 30))
        ]
        for g in range(groups)
    }
    tables = {g: _table(["".join(map(str, row)) for row in rows]) for g, rows in individuals.items()}
    overall = _sum(list(tables.values()))
    if any(overall.failures(i) == 0 for i in range(k)):
        return  # undefined; the authors' code asserts
    metrics = with_groups(result_dict(overall), overall, tables)["group_homogenization"]
    for key, value in _authors_metrics(individuals).items():
        assert metrics[key] == pytest.approx(value, rel=1e-9), key


def test_one_individual_per_group_gives_avg_unif_and_h() -> None:
    rows = ["111", "110", "011", "111", "000", "101", "111", "010"]
    tables = {f"person-{i}": _table([row]) for i, row in enumerate(rows)}
    overall = _sum(list(tables.values()))
    result = with_groups(result_dict(overall), overall, tables)
    metrics = result["group_homogenization"]
    assert metrics["avg"] == pytest.approx(result["homogenization"], rel=1e-12)
    assert metrics["unif"] == pytest.approx(result["homogenization"], rel=1e-12)


def test_undefined_metrics_say_why() -> None:
    tables = {"x": _table(["00", "10"]), "y": _table(["10", "00"])}  # company b never fails
    overall = _sum(list(tables.values()))
    metrics = with_groups(result_dict(overall), overall, tables)["group_homogenization"]
    assert (metrics["avg"], metrics["unif"], metrics["worst"], metrics["worst_group"]) == (None,) * 4
    assert any("undefined: failure rate is 0 for b" in note for note in metrics["notes"])


def test_noisy_group_sizes_whose_weights_cancel_leave_avg_undefined() -> None:
    """Under DP a group's published N_g can be negative; at k = 3 the weights N_g^3 of N_g = 2 and
    -2 add up to 0. avg is then undefined, with a note (it divided by zero: about 6 DP releases in
    300 of a small table failed their round with "could not release the result")."""
    overall = {"companies": ["a", "b", "c"], "shared_individuals": 10, "failures": {"a": 4, "b": 5, "c": 6}}
    groups = {
        "x": {"shared_individuals": 2, "failures": {"a": 1, "b": 1, "c": 1}},
        "y": {"shared_individuals": -2, "failures": {"a": 1, "b": 2, "c": 1}},
    }
    metrics = group_homogenization(overall, groups, ReleasePolicy(mechanism="discrete-laplace", epsilon=1.0))
    assert metrics["avg"] is None and metrics["unif"] is not None
    assert any("weights N_g^k add up to 0" in note for note in metrics["notes"])


def test_a_round_with_groups_costs_twice_under_differential_privacy() -> None:
    assert group_round_cost(RoundCost(1.0, 1e-6), True) == RoundCost(2.0, 2e-6)
    assert group_round_cost(RoundCost(1.0, 0.0), False) == RoundCost(1.0, 0.0)


# ====================================================================== release per group


def _three_party(seed: int, sizes: dict[str, int]) -> dict[str, PatternTable]:
    rng = random.Random(seed)
    return {
        label: _table(["".join(str(int(rng.random() < p)) for p in (0.5, 0.3, 0.4)) for _ in range(size)], 3)
        for label, size in sizes.items()
    }


def _released(tables: dict[str, PatternTable], policy: ReleasePolicy) -> dict[str, Any]:
    overall = _sum(list(tables.values()))
    return json.loads(json.dumps(with_groups(release(overall, policy), overall, tables, policy)))


def test_a_group_below_the_release_minimum_is_withheld_with_a_complement() -> None:
    tables = _three_party(1, {"A": 60, "B": 40, "C": 5})
    result = _released(tables, ReleasePolicy(min_shared_individuals=20))
    groups = result["groups"]
    assert groups["C"] == {
        "suppressed": True,
        "suppression_reason": "fewer shared individuals than the release minimum of 20",
    }
    # C alone would be the overall figures less A's and B's: B, the smallest other group, goes with it.
    assert groups["B"]["suppressed"] and "withheld with C" in groups["B"]["suppression_reason"]
    assert "shared_individuals" not in groups["B"]
    assert groups["A"]["suppressed"] is False and groups["A"]["shared_individuals"] == 60
    assert result["shared_individuals"] == 105
    metrics = result["group_homogenization"]
    assert metrics["groups_used"] == ["A"]
    assert any("'C' is withheld" in note for note in metrics["notes"])


def test_small_group_cells_are_withheld_and_cannot_be_recomputed_from_the_overall_table() -> None:
    tables = _three_party(2, {"A": 80, "B": 70, "C": 60})
    policy = ReleasePolicy(min_cell_count=5)
    result = _released(tables, policy)
    for label, table in tables.items():
        group = result["groups"][label]
        exact = {format(i, "03b"): c for i, c in enumerate(table.counts)}
        for pattern, count in group["pattern_counts"].items():
            assert count is None or count == exact[pattern]
            if 0 < exact[pattern] < 5:
                assert count is None, (label, pattern)
    withheld_somewhere = {
        p for g in result["groups"].values() for p, c in g["pattern_counts"].items() if c is None
    }
    assert withheld_somewhere
    for pattern in withheld_somewhere:  # the overall cell less the others would give it back
        assert result["pattern_counts"][pattern] is None, pattern
    assert "group_suppression_note" in result
    _assert_no_withheld_cell_is_determined(result, tables)


def test_a_small_failure_count_of_a_group_is_not_given_back_by_the_overall_one() -> None:
    tables = {
        "A": _table(["110"] * 20 + ["000"] * 20 + ["101"] * 20),
        "B": _table(["100"] * 2 + ["000"] * 38),
    }
    result = _released(tables, ReleasePolicy(min_cell_count=5))
    assert result["groups"]["B"]["failures"]["a"] is None  # 2 of B's 40 failed on a: withheld
    assert result["failures"]["a"] is None  # else the overall count less A's would give it back
    assert result["failures"]["b"] == 20 and result["failures"]["c"] == 20
    metrics = result["group_homogenization"]
    assert metrics["avg"] is None and any("'B' has failure counts withheld" in n for n in metrics["notes"])


def test_with_every_group_withheld_the_overall_table_is_published_as_always() -> None:
    tables = _three_party(5, {"A": 30, "B": 30})
    policy = ReleasePolicy(min_shared_individuals=40)
    result = _released(tables, policy)
    overall = _sum(list(tables.values()))
    assert all(group["suppressed"] for group in result["groups"].values())
    assert result["pattern_counts"] == {format(i, "03b"): c for i, c in enumerate(overall.counts)}
    assert "group_suppression_note" not in result


def _assert_no_withheld_cell_is_determined(result: dict[str, Any], tables: dict[str, PatternTable]) -> None:
    """Linear algebra over everything published: no withheld group cell follows exactly."""
    labels = list(tables)
    k = tables[labels[0]].parties
    cells = 2**k
    unknowns = [
        (g, c)
        for g in labels
        for c in range(cells)
        if result["groups"][g]["pattern_counts"][format(c, f"0{k}b")] is None
    ]
    if not unknowns:
        return
    column = {u: i for i, u in enumerate(unknowns)}
    rows = []
    for g in labels:  # each group's N, failures and (if published) S
        margins = [np.ones(cells)] + [
            np.array([(c >> (k - 1 - i)) & 1 for c in range(cells)], float) for i in range(k)
        ]
        if result["groups"][g]["systemic_failures"] is not None:
            margins.append(np.array([c == cells - 1 for c in range(cells)], float))
        for margin in margins:
            row = np.zeros(len(unknowns))
            for c in range(cells):
                if (g, c) in column:
                    row[column[(g, c)]] = margin[c]
            rows.append(row)
    for c in range(cells):  # every published overall cell is the sum of the groups' cells
        if result["pattern_counts"][format(c, f"0{k}b")] is not None:
            row = np.zeros(len(unknowns))
            for g in labels:
                if (g, c) in column:
                    row[column[(g, c)]] = 1
            rows.append(row)
    matrix = np.array(rows)
    rank = np.linalg.matrix_rank(matrix)
    for i, unknown in enumerate(unknowns):
        unit = np.zeros(len(unknowns))
        unit[i] = 1
        assert np.linalg.matrix_rank(np.vstack([matrix, unit])) > rank, f"{unknown} can be recomputed"


def test_under_differential_privacy_every_group_gets_the_round_noise() -> None:
    tables = _three_party(3, {"A": 300, "B": 200})
    policy = ReleasePolicy(mechanism="discrete-laplace", epsilon=0.5)
    result = _released(tables, policy)
    noisy = [result["groups"][g]["pattern_counts"] for g in tables]
    exact = [{format(i, "03b"): c for i, c in enumerate(tables[g].counts)} for g in tables]
    assert noisy != exact  # 16 cells of scale-2 noise: all unchanged with probability ~1e-7
    assert any(
        "parallel composition" in note and "2 epsilon" in note
        for note in result["group_homogenization"]["notes"]
    )
    assert result["group_homogenization"]["avg"] is not None


@pytest.mark.parametrize(
    "policy",
    [
        ReleasePolicy(),
        ReleasePolicy(min_cell_count=5),
        ReleasePolicy(min_shared_individuals=50),
        ReleasePolicy(min_shared_individuals=1000),
        ReleasePolicy(mechanism="discrete-gaussian", epsilon=1.0, delta=1e-6),
    ],
)
def test_released_results_with_groups_validate_against_the_schema(policy: ReleasePolicy) -> None:
    from monoculture.research.result import result_schema

    schema = result_schema()
    tables = _three_party(4, {"A": 80, "B": 70, "C": 20, "D": 0})
    result = _released(tables, policy)
    assert ind.schema_errors(result, schema) == []
    broken = json.loads(json.dumps(result))
    broken["group_homogenization"]["extra"] = 1
    assert ind.schema_errors(broken, schema)


# ====================================================================== the tags


def _values(blob: bytes | np.ndarray) -> np.ndarray:
    """Masked values (16 bytes each, as sealed or opened) as (n, 2) uint64."""
    return masks.values_from_bytes(blob if isinstance(blob, bytes) else blob.tobytes())


def test_only_the_groups_company_tags_carry_a_code() -> None:
    """v2: the code is no longer a plaintext byte beside the bit (`open_grouped` is gone). It is
    in the groups company's masked value, code * 4^k above the k lanes, and is read only from
    the sum of the k values of one individual. Every tag has the same length; the grouped AAD
    still binds the groups company's tags to the declared labels, so they open only with
    those labels and the other companies' tags only without labels."""
    roster, labels = ("acme", "globex", "initech"), ["x", "y", "z"]
    k = len(roster)
    keys = round_pair_keys("r-1", roster)
    u = masks.id_digests([f"person-{i}" for i in range(4)])
    bits = {"acme": [1, 0, 1, 0], "globex": [0, 1, 1, 0], "initech": [1, 1, 0, 0]}
    codes = np.array([2, 2, 0, 1])
    opener = TagOpener()
    sealers = {
        name: TagSealer("r-1", name, opener.public_key, group_labels=labels if name == "globex" else ())
        for name in roster
    }
    sent = {
        name: masks.masked_values(at, keys[name], u, bits[name], codes if name == "globex" else None)
        for at, name in enumerate(roster)
    }
    tags = {name: split_tags(sealers[name].seal(sent[name])) for name in roster}
    assert {len(t) for name in roster for t in tags[name]} == {TAG_SIZE}  # the same length for all
    opened = {}
    for name in roster:
        right = labels if name == "globex" else []
        opened[name] = _values(
            opener.opener_for("r-1", name, sealers[name].public_key, right).open(tags[name])
        )
        assert masks.values_to_bytes(opened[name]) == sent[name]
        for wrong in ([], ["x", "y"], labels):  # no labels, other labels, labels on a plain tag
            if wrong != right:
                with pytest.raises(ProtocolError, match="does not authenticate"):
                    opener.opener_for("r-1", name, sealers[name].public_key, wrong).open(tags[name])
    # The code is in globex's value only: it differs from the same bits sealed without codes by
    # exactly code * 4^k.
    uncoded = _values(masks.masked_values(1, keys["globex"], u, bits["globex"]))
    assert masks.values_to_ints(masks.sub_values(opened["globex"], uncoded)) == [c * 4**k for c in codes]
    # The sum of the three values decodes to the pattern and the code...
    total = masks.add_values(masks.add_values(opened["acme"], opened["globex"]), opened["initech"])
    patterns, decoded, ok = masks.decode_sums(total, k, len(labels))
    assert ok.all() and decoded.tolist() == codes.tolist()
    assert patterns.tolist() == [int(f"{a}{g}{i}", 2) for a, g, i in zip(*bits.values(), strict=True)]
    # ...with globex's value sealed without codes, to code 0 (the others' values carry none)...
    plain_total = masks.add_values(masks.add_values(opened["acme"], uncoded), opened["initech"])
    plain_patterns, plain_codes, plain_ok = masks.decode_sums(plain_total, k, len(labels))
    assert plain_ok.all() and plain_codes.tolist() == [0] * 4 and plain_patterns.tolist() == patterns.tolist()
    # ...and no value alone, nor the sum of any two, decodes at all.
    for size in (1, 2):
        for subset in itertools.combinations(roster, size):
            partial = opened[subset[0]] if size == 1 else masks.add_values(*(opened[n] for n in subset))
            assert not masks.decode_sums(partial, k, len(labels))[2].any(), subset
    with pytest.raises(ValueError, match="group codes"):  # codes are 0..126 (MAX_GROUP_LABELS - 1)
        masks.masked_values(1, keys["globex"], u, bits["globex"], np.array([0, 1, 127, 0]))
    with pytest.raises(ProtocolError, match="at most 127"):
        TagSealer("r-1", "acme", opener.public_key, group_labels=[str(i) for i in range(128)])


def test_a_code_beyond_the_declared_labels_fails_the_sum_and_the_count() -> None:
    """v2 (was: test_an_opener_refuses_a_code_beyond_the_declared_labels): a tag no longer opens to
    a code, so no opener can refuse one. A groups company that puts code 2 in its masked value
    when the round declared two labels seals tags that open (the AAD names the labels, not the
    codes), but the sum of that individual's values fails `decode_sums` (ok False, pattern and
    code -1) and counting fails the round. The same lists with code 1 count."""
    roster, labels = ("acme", "globex"), ["x", "y"]
    keys = round_pair_keys("r-1", roster)
    u = masks.id_digests(["p0", "p1", "p2"])
    bits = {"acme": [1, 0, 1], "globex": [1, 1, 0]}
    tokens = [bytes([2]) + i.to_bytes(32, "big") for i in range(3)]
    opener = TagOpener()
    sealers = {
        name: TagSealer("r-1", name, opener.public_key, group_labels=labels if name == "acme" else ())
        for name in roster
    }
    openers = {
        name: opener.opener_for("r-1", name, sealers[name].public_key, labels if name == "acme" else ())
        for name in roster
    }

    def lists(last_code: int) -> tuple[list[FinalList], np.ndarray]:
        codes = np.array([0, 1, last_code])
        finals, total = [], None
        for at, name in enumerate(roster):
            sent = masks.masked_values(at, keys[name], u, bits[name], codes if name == "acme" else None)
            value = _values(sent)
            total = value if total is None else masks.add_values(total, value)
            rows = np.frombuffer(bytes(sealers[name].seal(sent)), dtype=np.uint8).reshape(-1, TAG_SIZE)
            order = [2, 0, 1] if name == "globex" else [0, 1, 2]  # globex's list in another order
            finals.append(FinalList(name, b"".join(tokens[j] for j in order), rows[order]))
        assert total is not None
        return finals, total

    finals, total = lists(1)
    patterns, codes, ok = masks.decode_sums(total, 2, len(labels))
    assert ok.all() and codes.tolist() == [0, 1, 1] and patterns.tolist() == [3, 1, 2]
    counted = count_group_patterns(roster, finals, openers, "acme", labels)
    assert counted.groups["x"].counts == (0, 0, 0, 1) and counted.groups["y"].counts == (0, 1, 1, 0)

    finals, total = lists(2)
    patterns, codes, ok = masks.decode_sums(total, 2, len(labels))
    assert ok.tolist() == [True, True, False]
    assert patterns.tolist() == [3, 1, -1] and codes.tolist() == [0, 1, -1]
    assert masks.decode_sums(total, 2, 3)[2].all()  # with a third label declared, code 2 would pass
    for name, final in zip(roster, finals, strict=True):  # every tag still opens
        assert len(openers[name].open(split_tags(final.tags.tobytes()))) == 3
    counted = count_group_patterns(roster, finals, openers, "acme", labels)  # counted, not failed
    assert counted.undecodable == 1 and counted.table.shared_individuals == 2
    assert counted.groups["x"].counts == (0, 0, 0, 1) and counted.groups["y"].counts == (0, 1, 0, 0)


# ====================================================================== input


def test_group_labels_are_read_only_when_asked(tmp: Path) -> None:
    path = tmp / "a.csv"
    path.write_text("id,failed,region\nx,1,north\ny,0,south\nz,1, north \n")
    spec = InputSpec(path, group_column="region")
    assert load_records(spec).groups is None
    records = load_records(spec, groups=True)
    assert records.group_mapping() == {"x": "north", "y": "south", "z": "north"}
    assert records.groups is not None and records.groups.labels == ("north", "south")
    assert records.groups.codes.dtype == np.uint16
    assert records.groups.round_codes(["south", "north"]).tolist() == [1, 0, 1]
    with pytest.raises(GroupLabelError) as undeclared:
        records.groups.round_codes(["north"])
    assert "'south'" in undeclared.value.message and "south" not in undeclared.value.reason
    assert load_records(InputSpec(tmp / "a.csv")).groups is None  # no group column configured: fine


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"id,failed\nx,1\n", ":1: has no column 'region'"),
        (b"id,failed,region\nx,1,north\ny,0,\n", ":3: column 'region' is empty"),
        (b"id,failed,region\nx,1,north\ny,0,   \n", ":3: column 'region' is empty"),
        (b"id,failed,region\nx,1," + b"n" * 65 + b"\n", ":2: group label is 65 characters long"),
        (b"id,failed,region\nx,1,no\x07rth\n", ":2: column 'region' holds a label with a non-printable"),
        (b"id,failed,region\nx,1,north\ny,0,nor\xffth\n", ":3: column 'region' is not UTF-8 text"),
        (b"id,failed,region,region\nx,1,a,b\n", "names column 'region' twice"),
    ],
)
def test_bad_group_labels_are_named_by_file_line_and_field(tmp: Path, content: bytes, match: str) -> None:
    path = tmp / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=match) as refused:
        load_records(InputSpec(path, group_column="region"), groups=True)
    assert str(path) in str(refused.value)


def test_a_missing_group_column_setting_is_refused_for_the_groups_company(tmp: Path) -> None:
    path = tmp / "a.csv"
    path.write_text("id,failed\nx,1\n")
    with pytest.raises(GroupLabelError, match="no group column is configured") as refused:
        load_records(InputSpec(path), groups=True)
    assert "names no group column" in refused.value.reason and str(path) not in refused.value.reason


def test_parquet_group_labels(tmp: Path) -> None:
    path = tmp / "a.parquet"
    table = pa.table({"id": ["x", "y", "z"], "failed": [1, 0, 1], "region": [7, 8, 7]})
    pq.write_table(table, path)
    records = load_records(InputSpec(path, group_column="region"), groups=True)
    assert records.group_mapping() == {"x": "7", "y": "8", "z": "7"}
    pq.write_table(pa.table({"id": ["x"], "failed": [1], "region": pa.array([b"\xff"], pa.binary())}), path)
    with pytest.raises(InputError, match="row 1: column 'region' holds a label that is not UTF-8"):
        load_records(InputSpec(path, group_column="region"), groups=True)
    pq.write_table(pa.table({"id": ["x"], "failed": [1], "region": pa.array([None], pa.string())}), path)
    with pytest.raises(InputError, match="row 1: column 'region' is empty"):
        load_records(InputSpec(path, group_column="region"), groups=True)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("keep-first", {"x": "a", "y": "b"}), ("drop-conflicting", {"y": "b"})],
)
def test_repeated_ids_with_different_labels(tmp: Path, policy: str, expected: dict[str, str]) -> None:
    path = tmp / "a.csv"
    path.write_text("id,failed,g\nx,1,a\ny,0,b\nx,1,c\ny,0,b\n")
    from monoculture.core.dataset import DuplicatePolicy

    records = load_records(InputSpec(path, group_column="g", duplicates=DuplicatePolicy(policy)), groups=True)
    assert records.group_mapping() == expected
    with pytest.raises(InputError, match="carry different group labels"):
        load_records(InputSpec(path, group_column="g", duplicates=DuplicatePolicy("any-failed")), groups=True)


def test_the_client_config_reads_the_group_column(tmp: Path) -> None:
    config = tmp / "client.toml"
    config.write_text(
        '[client]\ncompany = "acme"\ncoordinator = "127.0.0.1:1"\n'
        '[data]\npath = "acme.csv"\ngroup_column = "region"\n'
    )
    assert load_client_config(config, insecure=True).data.group_column == "region"
    config.write_text('[client]\ncompany = "acme"\ncoordinator = "127.0.0.1:1"\n[data]\npath = "acme.csv"\n')
    assert load_client_config(config, insecure=True).data.group_column is None


# ====================================================================== rounds


def _digit_rows() -> tuple[dict[str, list[tuple[str, int]]], dict[str, str]]:
    rows = {
        name: [(i, int(f)) for i, f in load_records(InputSpec(example("digit", name))).as_mapping().items()]
        for name in DIGIT
    }
    with GROUPED_GOOGLE.open(newline="") as handle:
        speaker = {row["id"]: row["speaker"] for row in csv.DictReader(handle)}
    return rows, speaker


def _plaintext_groups(
    rows: dict[str, list[tuple[str, int]]], labels_of: dict[str, str], groups_from: str, labels: list[str]
) -> dict[str, Any]:
    names = list(rows)
    outcomes = [dict(r) for r in rows.values()]
    table = plaintext_table(names, outcomes)
    return with_groups(
        result_dict(table), table, plaintext_group_tables(names, outcomes, groups_from, labels_of, labels)
    )


def _assert_same_groups(secure: dict[str, Any], plain: dict[str, Any]) -> None:
    assert_same_integers(secure, plain)
    assert list(secure["groups"]) == list(plain["groups"])
    for label, group in plain["groups"].items():
        for key in (
            "shared_individuals",
            "failures",
            "systemic_failures",
            "pattern_counts",
            "homogenization",
        ):
            assert secure["groups"][label][key] == group[key], (label, key)
    assert secure["group_homogenization"] == plain["group_homogenization"]


def test_real_data_with_groups_equals_plaintext_exactly(tmp_path: Path) -> None:
    rows, speaker = _digit_rows()
    harness = Harness(tmp_path, rows, group_labels={"google": speaker}, chunk_elements=500)
    round_id = harness.open_round(groups_from="google", group_labels=SPEAKERS)
    assert harness.run(round_id) == RoundPhase.COMPLETE
    result = harness.result(round_id)
    plain = _plaintext_groups(rows, speaker, "google", SPEAKERS)
    _assert_same_groups(result, plain)
    assert result["shared_individuals"] == 2000 and round(result["homogenization"], 4) == 4.6676
    assert {g: result["groups"][g]["shared_individuals"] for g in SPEAKERS} == dict.fromkeys(SPEAKERS, 500)
    assert (
        sum(result["groups"][g]["systemic_failures"] for g in SPEAKERS) == result["systemic_failures"] == 287
    )
    metrics = result["group_homogenization"]
    assert (round(metrics["avg"], 4), round(metrics["unif"], 4), round(metrics["worst"], 4)) == (
        1.7962,
        1.7962,
        6.3546,
    )
    assert metrics["worst_group"] == "nicolas"
    harness.close()


def _population(seed: int = 3, size: int = 60) -> tuple[dict[str, list[tuple[str, int]]], dict[str, str]]:
    rng = random.Random(seed)  # test data only; never a key
    people = [f"person-{i}" for i in range(size)]
    region = {p: rng.choice(["north", "south", "east"]) for p in people}
    rows = {
        name: [
            (p, int(rng.random() < (0.5 if region[p] == "north" else 0.2)))
            for j, p in enumerate(people)
            if j % 6 != index
        ]
        for index, name in enumerate(("alpha", "beta", "gamma"))
    }
    return rows, region


def _uploads(harness: Harness, round_id: str) -> Counter:
    return Counter(d for _, action, d in harness.audit_actions(round_id) if action == "uploaded")


def test_an_undeclared_label_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    rows, region = _population()
    harness = Harness(tmp_path, rows, group_labels={"beta": region})
    round_id = harness.open_round(groups_from="beta", group_labels=["north", "south"])  # no "east"
    assert harness.run(round_id) == RoundPhase.FAILED
    status = harness.status(round_id)
    assert status.failed_party == "beta"
    assert "beta withdrew" in status.failure_reason
    assert "group column holds 1 label(s) that the round did not declare" in status.failure_reason
    for secret in ("east", "person-", str(tmp_path)):  # no label, id or path leaves in the reason
        assert secret not in status.failure_reason
    enrolled = [actor for actor, action, _ in harness.audit_actions(round_id) if action == "enrolled"]
    assert "beta" not in enrolled
    assert _uploads(harness, round_id) == Counter()
    harness.close()


def test_a_groups_company_without_a_group_column_is_refused(tmp_path: Path) -> None:
    rows, _ = _population()
    harness = Harness(tmp_path, rows)
    round_id = harness.open_round(groups_from="gamma", group_labels=["north"])
    assert harness.run(round_id) == RoundPhase.FAILED
    status = harness.status(round_id)
    assert status.failed_party == "gamma" and "names no group column" in status.failure_reason
    harness.close()


@pytest.mark.parametrize(
    ("groups_from", "labels", "match"),
    [
        ("delta", ["a"], "groups come from 'delta', which is not on the roster"),
        ("alpha", [], "need the labels the round declares"),
        ("", ["a"], "group labels need the company"),
        ("alpha", ["a", "b", "a"], "group label 'a' is declared twice"),
        ("alpha", ["a", ""], "group label '' is not allowed"),
        ("alpha", ["a", " b"], "group label ' b' is not allowed"),
        ("alpha", ["a", "x" * 65], "is not allowed"),
        ("alpha", ["a\tb"], "is not allowed"),
        ("alpha", [f"g{i}" for i in range(128)], "128 group labels declared; a round holds at most 127"),
    ],
)
def test_open_round_refuses_groups_it_cannot_run(
    tmp_path: Path, groups_from: str, labels: list[str], match: str
) -> None:
    rows, _ = _population()
    harness = Harness(tmp_path, rows)
    with pytest.raises(LinkError, match=match) as refused:
        harness.open_round(groups_from=groups_from, group_labels=labels)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    harness.close()


def test_the_group_code_travels_only_in_the_groups_company_tags(tmp_path: Path, monkeypatch) -> None:
    """A whole round with groups from beta (gamma has a group column too). v2: the final tags open
    to masked values, so the code is checked where it now travels: with the companies' own keys
    (taken from their daemons at counting time), every company's value of every id it holds,
    unmasked, is exactly its failure bit in its lane, plus the id's group code above the lanes
    for beta only (alpha's and gamma's carry no code). The coordinator's view: beta's tags open
    only with the declared labels, the others' only without; no value alone and no sum of fewer
    than k values decodes; the sum of the k values of a shared individual decodes to its
    pattern and its code."""
    rows, region = _population()
    labels = ["north", "south", "east"]
    harness = Harness(
        tmp_path, rows, group_labels={"beta": region, "gamma": region}
    )  # gamma has a column too
    relayed: list[Any] = []
    harness.network.tamper = lambda chunk: relayed.append(chunk) or chunk
    finals: dict[str, FinalList] = {}
    secrets: dict[str, Any] = {}
    original = coordinator_rounds.count_group_patterns

    def keep(roster, lists, openers, groups_from, group_labels, spill=None):  # type: ignore[no-untyped-def]
        lists = [whole(final) for final in lists]  # the coordinator hands lists read chunk by chunk
        finals.update({final.owner: final for final in lists})
        secrets.update({name: daemon._rounds[round_id].secrets for name, daemon in harness.daemons.items()})
        return original(roster, lists, openers, groups_from, group_labels, spill)

    monkeypatch.setattr(coordinator_rounds, "count_group_patterns", keep)
    round_id = harness.open_round(groups_from="beta", group_labels=labels)
    harness.step_all()  # everyone joins: only beta keeps the labels (its tags carry codes)
    assert harness.daemons["beta"]._rounds[round_id].secrets.group_labels == tuple(labels)
    for other in ("alpha", "gamma"):
        assert harness.daemons[other]._rounds[round_id].secrets.group_labels == ()
        assert harness.daemons[other]._rounds[round_id].tags.group_labels == ()
    assert harness.run(round_id) == RoundPhase.COMPLETE
    # Every relayed chunk is sealed to the next company; sizes depend only on the element count.
    assert relayed and all(c.sealed and not c.points and not c.tags for c in relayed)
    sizes = defaultdict(set)
    for chunk in relayed:
        sizes[chunk.chunk_elements].add(len(chunk.sealed))
    assert all(len(s) == 1 for s in sizes.values()), sizes
    # Each final token's id: every company's blinding of it (the blinding commutes).
    roster = secrets["alpha"].roster
    k = len(roster)
    assert roster == ("alpha", "beta", "gamma") and all(secrets[name].pair_keys for name in roster)
    ids = sorted({record_id for held in rows.values() for record_id, _ in held})
    points = BlindingKey(secrets[roster[0]].blinding_key).hash_and_blind(ids)
    for name in roster[1:]:
        points = BlindingKey(secrets[name].blinding_key).reblind(points)
    id_of = dict(zip(points, ids, strict=True))
    failed = {name: dict(held) for name, held in rows.items()}
    book = harness.book._rounds[round_id]
    opener = book.tag_opener
    value_of: dict[str, dict[str, np.ndarray]] = {}
    for owner in roster:
        final = finals[owner]
        assert final.tags.shape[1] == TAG_SIZE
        tags = split_tags(final.tags.tobytes())
        key = book.peers[owner].tag_public_key
        right = labels if owner == "beta" else []
        values = _values(opener.opener_for(round_id, owner, key, right).open(tags))
        with pytest.raises(ProtocolError, match="does not authenticate"):
            opener.opener_for(round_id, owner, key, [] if right else labels).open(tags)
        held = [id_of[token] for token in split_points(final.tokens)]
        assert sorted(held) == sorted(failed[owner])
        at = roster.index(owner)
        unmasked = masks.sub_values(
            values, masks.masks(at, dict(secrets[owner].pair_keys), masks.id_digests(held))
        )
        codes = np.array([labels.index(region[i]) for i in held]) if owner == "beta" else None
        expected = masks.lane_values(at, k, [failed[owner][i] for i in held], codes)
        assert masks.values_to_ints(unmasked) == masks.values_to_ints(expected), owner
        assert not masks.decode_sums(values, k, len(labels))[2].any(), owner  # a value alone: nothing
        value_of[owner] = dict(zip(held, values, strict=True))
    beta_codes = {labels.index(region[i]) for i in value_of["beta"]}
    assert len(beta_codes) > 1  # the codes differ between individuals: a wrong one would show
    shared = sorted(set.intersection(*(set(value_of[name]) for name in roster)))
    assert shared
    column = {name: np.array([value_of[name][i] for i in shared]) for name in roster}
    for pair in (("alpha", "beta"), ("alpha", "gamma"), ("beta", "gamma")):
        assert not masks.decode_sums(masks.add_values(*(column[n] for n in pair)), k, len(labels))[2].any()
    total = masks.add_values(masks.add_values(column["alpha"], column["beta"]), column["gamma"])
    patterns, codes, ok = masks.decode_sums(total, k, len(labels))
    assert ok.all()
    assert codes.tolist() == [labels.index(region[i]) for i in shared]
    assert patterns.tolist() == [int("".join(str(failed[n][i]) for n in roster), 2) for i in shared]
    _assert_same_groups(harness.result(round_id), _plaintext_groups(rows, region, "beta", labels))
    harness.close()


@pytest.mark.parametrize("crash_after", range(6))
def test_groups_survive_a_coordinator_restart_mid_round(tmp_path: Path, crash_after: int) -> None:
    rows, region = _population()
    labels = ["east", "north", "south"]
    harness = Harness(tmp_path, rows, group_labels={"gamma": region})
    round_id = harness.open_round(groups_from="gamma", group_labels=labels)
    for _ in range(crash_after):
        harness.step_all()
    harness.restart_coordinator()
    state = harness.book._rounds[round_id].state
    assert (state.groups_from, state.group_labels) == ("gamma", tuple(labels))
    assert harness.run(round_id) == RoundPhase.COMPLETE
    _assert_same_groups(harness.result(round_id), _plaintext_groups(rows, region, "gamma", labels))
    harness.close()


@pytest.mark.parametrize("crash_after", range(4))
def test_the_groups_company_resumes_after_a_crash(tmp_path: Path, crash_after: int) -> None:
    rows, region = _population()
    labels = ["east", "north", "south"]
    harness = Harness(tmp_path, rows, group_labels={"alpha": region})
    round_id = harness.open_round(groups_from="alpha", group_labels=labels)
    for _ in range(crash_after):
        harness.step_all()
    harness.restart_company("alpha")  # its sealed state keeps the labels; it reads its file again
    assert harness.run(round_id) == RoundPhase.COMPLETE
    _assert_same_groups(harness.result(round_id), _plaintext_groups(rows, region, "alpha", labels))
    assert set(_uploads(harness, round_id).values()) == {1}
    harness.close()


def test_round_state_keeps_its_groups_through_json() -> None:
    state = RoundState("r-0123456789abcdef", Ring(("a", "b")), groups_from="b", group_labels=("x", "y"))
    again = RoundState.from_json(state.to_json())
    assert (again.groups_from, again.group_labels) == ("b", ("x", "y"))
    old = json.loads(state.to_json())
    del old["groups_from"], old["group_labels"]  # a row stored before groups existed
    assert RoundState.from_json(json.dumps(old)).group_labels == ()


@st.composite
def _grouped_populations(draw: st.DrawFn) -> dict[str, Any]:
    k = draw(st.integers(2, 4))
    universe = draw(st.integers(1, 40))
    labels = [f"g{i}" for i in range(draw(st.integers(1, 5)))]
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    group_of = {f"id-{j}": rng.choice(labels) for j in range(universe)}
    companies = []
    for i in range(k):
        held = [j for j in range(universe) if rng.random() < 0.8] or [0]
        rate = rng.choice([0.0, 0.3, 0.7, 1.0])
        companies.append((f"c{i}", [(f"id-{j}", int(rng.random() < rate)) for j in held]))
    return {
        "companies": companies,
        "labels": labels,
        "group_of": group_of,
        "groups_from": f"c{draw(st.integers(0, k - 1))}",
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(population=_grouped_populations(), chunk=st.integers(1, 20))
def test_secure_group_tables_equal_plaintext(tmp_path: Path, population: dict[str, Any], chunk: int) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    records = []
    for name, rows in population["companies"]:
        path = folder / f"{name}.csv"
        path.write_text("id,failed,g\n" + "".join(f"{i},{f},{population['group_of'][i]}\n" for i, f in rows))
        spec = InputSpec(path, group_column="g")
        records.append((name, load_records(spec, groups=name == population["groups_from"])))
    counted = run_grouped_round_in_process(records, population["groups_from"], population["labels"], chunk)
    names = [name for name, _ in population["companies"]]
    outcomes = [dict(rows) for _, rows in population["companies"]]
    plain = plaintext_group_tables(
        names, outcomes, population["groups_from"], population["group_of"], population["labels"]
    )
    assert counted.groups == plain
    assert counted.table == plaintext_table(names, outcomes) == _sum(list(plain.values()))


# ====================================================================== the command line


def _cli(args: list[str], capsys) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    code = cli_main(args)
    return code, capsys.readouterr().err


def _digit_flags() -> list[str]:
    return [
        "--company", f"google={GROUPED_GOOGLE}",
        "--company", f"microsoft={example('digit', 'microsoft')}",
        "--company", f"ibm={example('digit', 'ibm')}",
    ]  # fmt: skip


def test_plaintext_with_groups(tmp: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp / "plain.json"
    code, err = _cli(
        [
            "plaintext",
            *_digit_flags(),
            "--group-column",
            "speaker",
            "--groups-from",
            "google",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    result = json.loads(out.read_text())
    assert list(result["groups"]) == SPEAKERS  # the file's labels, sorted
    assert result["group_homogenization"]["worst_group"] == "nicolas"
    code, err = _cli(
        [
            "plaintext",
            *_digit_flags(),
            "--group-column",
            "speaker",
            "--groups-from",
            "google",
            "--group-labels",
            "jackson,theo",
        ],
        capsys,
    )
    assert code == 2 and "2 group label(s) on 1000 records are not among the 2 labels" in err
    code, err = _cli(["plaintext", *_digit_flags(), "--groups-from", "google"], capsys)
    assert code == 2 and "--groups-from needs --group-column" in err
    code, err = _cli(
        ["plaintext", *_digit_flags(), "--group-column", "speaker", "--groups-from", "amazon"], capsys
    )
    assert code == 2 and "no --company of that name" in err


def test_round_open_needs_the_labels_it_declares(capsys) -> None:  # type: ignore[no-untyped-def]
    base = ["round", "open", "--insecure", "--coordinator", "127.0.0.1:9", "--companies", "a,b"]
    code, err = _cli([*base, "--groups-from", "a"], capsys)
    assert code == 2 and "--groups-from needs --group-labels a,b,c" in err
    code, err = _cli([*base, "--group-labels", "x,y"], capsys)
    assert code == 2 and "--group-labels needs --groups-from" in err


@pytest.mark.e2e
def test_simulate_with_groups_equals_plaintext_on_real_data(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    flags = [*_digit_flags(), "--group-column", "speaker", "--groups-from", "google"]
    secure_out, plain_out = tmp_path / "secure.json", tmp_path / "plain.json"
    done = subprocess.run(
        [sys.executable, "-m", "monoculture", "simulate", *flags, "--out", str(secure_out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "group homogenization: avg 1.7962, unif 1.7962, worst 6.3546 (group nicolas)" in done.stdout
    code, err = _cli(["plaintext", *flags, "--out", str(plain_out)], capsys)
    assert code == 0, err
    _assert_same_groups(json.loads(secure_out.read_text()), json.loads(plain_out.read_text()))
