"""openmined-psi's two-party cardinality protocol as two processes (the benchmark's fair
reference for a two-company round), and the ratio expected from operation counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from monoculture.research.psi_peers import expected_ratio, run_two_processes


def _ids(path: Path, ids: list[str]) -> Path:
    path.write_text("id,failed\n" + "".join(f"{i},0\n" for i in ids), encoding="utf-8")
    return path


def test_two_processes_count_the_intersection(tmp_path: Path) -> None:
    client = _ids(tmp_path / "client.csv", [f"p{i}" for i in range(0, 400)])
    server = _ids(tmp_path / "server.csv", [f"p{i}" for i in range(250, 900)])
    run = run_two_processes(client, server)
    assert run.size == 150
    assert set(run.steps) == {"server setup", "server process", "client request", "client size"}
    assert all(seconds > 0 for seconds in run.steps.values())
    assert run.seconds >= max(run.steps["client request"], run.steps["server setup"])


def test_a_bad_file_fails_without_hanging(tmp_path: Path) -> None:
    client = _ids(tmp_path / "client.csv", ["a", "b"])
    bad = tmp_path / "server.csv"
    bad.write_text("name\nx\n", encoding="utf-8")  # no id column
    with pytest.raises(RuntimeError, match="ended early"):
        run_two_processes(client, bad)


def test_expected_ratio_from_operation_counts() -> None:
    # ours: each company n hash-to-curve + multiply, then n multiply (the other's list)
    # theirs: max(n, n) hash-to-curve + multiply at once, then 2n multiplies on the critical path
    n, create, multiply = 1000, 60e-6, 40e-6
    ratio = expected_ratio([(n, n), (n, n)], (n, n), create, multiply)
    assert ratio == pytest.approx((create + multiply) / (create + 2 * multiply))
    # the slower company sets our pace
    assert expected_ratio([(n, n), (2 * n, n)], (n, n), create, multiply) > ratio
