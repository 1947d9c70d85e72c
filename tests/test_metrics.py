"""Known-answer tests of the metrics and their statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import example

from monoculture.analysis.metrics import result_dict
from monoculture.analysis.stats import all_fail_null_distribution, poisson_binomial
from monoculture.analysis.table import PatternTable, count_patterns, pattern_string, plaintext_table
from monoculture.core.dataset import InputSpec, load_records


def _folder(folder: str, companies: list[str]) -> dict:
    outcomes = [load_records(InputSpec(example(folder, c))).as_mapping() for c in companies]
    return result_dict(plaintext_table(companies, outcomes))


@pytest.mark.parametrize(
    ("folder", "companies", "h", "s"),
    [
        ("digit", ["google", "microsoft", "ibm"], 4.6676, 0.1435),
        ("ferplus", ["google", "facepp", "microsoft"], 3.6271, None),
        ("waimai", ["google", "baidu", "amazon"], 18.3599, None),
    ],
)
def test_known_figures_on_real_data(folder: str, companies: list[str], h: float, s: float | None) -> None:
    result = _folder(folder, companies)
    assert round(result["homogenization"], 4) == h
    if s is not None:
        assert result["systemic_failure_rate"] == s


def test_digit_result_matches_the_documented_json() -> None:
    result = _folder("digit", ["google", "microsoft", "ibm"])
    assert result["shared_individuals"] == 2000
    assert result["failures"] == {"google": 1398, "microsoft": 347, "ibm": 507}
    assert result["failure_rates"] == {"google": 0.699, "microsoft": 0.1735, "ibm": 0.2535}
    assert result["systemic_failures"] == 287
    assert result["failure_count_histogram"] == [576, 883, 254, 287]
    assert result["pattern_counts"] == {
        "000": 576, "001": 20, "010": 5, "011": 1, "100": 858, "101": 199, "110": 54, "111": 287,
    }  # fmt: skip
    assert math.isclose(result["expected_systemic_failure_rate"], 0.0307436, rel_tol=1e-5)


def test_tiny_public_case_gives_h_8() -> None:
    # 4 individuals x 5 models; S = 0.25 and prod fail = 0.03125 -> H = 8.
    bits = [[1, 0, 0, 1], [1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1], [1, 1, 0, 0]]
    table = PatternTable(tuple("abcde"), tuple(int(c) for c in count_patterns(bits)))
    result = result_dict(table)
    assert result["systemic_failure_rate"] == 0.25
    assert math.isclose(result["expected_systemic_failure_rate"], 0.03125)
    assert math.isclose(result["homogenization"], 8.0)


def test_zero_failure_rate_makes_h_undefined_with_a_note() -> None:
    table = PatternTable(("a", "b"), (5, 3, 0, 0))  # a never fails
    result = result_dict(table)
    assert result["homogenization"] is None
    assert "a" in result["homogenization_note"] and "0" in result["homogenization_note"]
    assert result["failure_rates"]["a"] == 0
    assert result["homogenization_ci95"] is None


def test_no_systemic_failures_gives_h_zero() -> None:
    result = result_dict(PatternTable(("a", "b"), (5, 3, 2, 0)))
    assert result["homogenization"] == 0
    assert result["systemic_failures"] == 0


def test_no_shared_individuals() -> None:
    result = result_dict(PatternTable(("a", "b"), (0, 0, 0, 0)))
    assert result["shared_individuals"] == 0
    assert result["homogenization"] is None
    assert "no shared individuals" in result["homogenization_note"]
    assert result["failure_rates"] == {"a": None, "b": None}


def test_pattern_strings_put_company_zero_first() -> None:
    assert pattern_string(4, 3) == "100"
    counts = count_patterns([[1, 0], [0, 0], [0, 1]])
    assert counts[0b100] == 1 and counts[0b001] == 1


def test_plaintext_table_joins_on_shared_ids_only() -> None:
    table = plaintext_table(["a", "b"], [{"x": 1, "y": 0, "z": 1}, {"x": 1, "z": 0, "w": 1}])
    assert table.shared_individuals == 2
    assert table.counts == (0, 0, 1, 1)  # z: "10", x: "11"


def test_exact_test_for_two_companies_is_fishers_test() -> None:
    # N = 20, n1 = 8, n2 = 6, all-fail count 5: P(X >= 5) under Hypergeom(20, 8, 6).
    n, n1, n2, observed = 20, 8, 6, 5
    fisher = sum(math.comb(n1, x) * math.comb(n - n1, n2 - x) for x in range(observed, n2 + 1))
    fisher /= math.comb(n, n2)
    table = PatternTable(("a", "b"), (n - n1 - n2 + observed, n2 - observed, n1 - observed, observed))
    result = result_dict(table)
    assert math.isclose(result["homogenization_test"]["p_value_greater"], fisher, rel_tol=1e-9)


def test_null_distribution_of_three_companies_matches_enumeration() -> None:
    # Brute force: place failures independently at random by exact enumeration of counts.
    n, counts = 9, [4, 5, 3]
    dist = all_fail_null_distribution(n, counts)
    brute = np.zeros(len(dist))
    for m2 in range(0, 5):
        p2 = math.comb(4, m2) * math.comb(5, 5 - m2) / math.comb(9, 5)
        for m3 in range(0, m2 + 1):
            if m3 > 3 or 3 - m3 > 9 - m2:
                continue
            p3 = math.comb(m2, m3) * math.comb(9 - m2, 3 - m3) / math.comb(9, 3)
            brute[m3] += p2 * p3
    assert np.allclose(dist, brute[: len(dist)])
    assert math.isclose(dist.sum(), 1.0)


def test_poisson_binomial_baseline() -> None:
    dist = poisson_binomial([0.2, 0.5, 0.9])
    assert math.isclose(dist.sum(), 1.0)
    assert math.isclose(float(np.dot(np.arange(4), dist)), 1.6)
    assert math.isclose(dist[3], 0.2 * 0.5 * 0.9)


def test_delta_ci_contains_h_and_is_positive() -> None:
    result = _folder("digit", ["google", "microsoft", "ibm"])
    low, high = result["homogenization_ci95"]
    assert 0 < low < result["homogenization"] < high
