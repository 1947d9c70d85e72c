"""`monoculture.measure`: the workbench from Python, on files, DataFrames, mappings and arrays,
plaintext and private (real processes over mutual TLS), with the CLI's errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from conftest import example

import monoculture
from monoculture.analysis.release import ReleasePolicy
from monoculture.core.errors import MonocultureError

COMPANIES = ["google", "microsoft", "ibm"]


def _children() -> list[int]:
    """Processes whose parent is this one (Linux /proc), zombies included."""
    mine = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            mine.append(int(stat.parent.name))
    return mine


def _frames() -> dict[str, pd.DataFrame]:
    return {name: pd.read_csv(example("digit", name)) for name in COMPANIES}


def _cli_plaintext(tmp_path: Path) -> dict:
    args = [sys.executable, "-m", "monoculture", "plaintext", "--out", str(tmp_path / "cli.json")]
    for name in COMPANIES:
        args += ["--company", f"{name}={example('digit', name)}"]
    assert subprocess.run(args, capture_output=True, timeout=120).returncode == 0
    return json.loads((tmp_path / "cli.json").read_text(encoding="utf-8"))


def test_files_dataframes_mappings_and_arrays_give_the_cli_figures(tmp_path: Path) -> None:
    cli = _cli_plaintext(tmp_path)
    frames = _frames()
    inputs = {
        "files": {name: example("digit", name) for name in COMPANIES},
        "dataframes": frames,
        "mappings": {name: dict(zip(f["id"], f["failed"], strict=True)) for name, f in frames.items()},
        "arrays": {name: (f["id"].to_numpy(), f["failed"].to_numpy()) for name, f in frames.items()},
    }
    for kind, data in inputs.items():
        result = monoculture.measure(data)
        assert result.shared_individuals == cli["shared_individuals"] == 2000, kind
        assert result.raw["pattern_counts"] == cli["pattern_counts"], kind
        assert result.homogenization == pytest.approx(cli["homogenization"], rel=1e-12), kind
    assert round(result.homogenization, 4) == 4.6676


def test_results_come_as_attributes_frames_and_plots() -> None:
    result = monoculture.measure(_frames())
    frame = result.to_frame()
    assert list(frame.index) == COMPANIES and frame.loc["google", "failure_rate"] == pytest.approx(0.699)
    assert (frame["ci95_low"] < frame["failure_rate"]).all() and (
        frame["failure_rate"] < frame["ci95_high"]
    ).all()
    patterns = result.patterns()
    assert int(patterns.loc[(patterns[COMPANIES] == 1).all(axis=1), "count"].iloc[0]) == 287
    assert result.pairwise().loc["microsoft", "ibm"] == pytest.approx(3.274, rel=1e-3)
    assert result.to_dict()["systemic_failures"] == 287
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    assert isinstance(result.plot_failure_rates(), Axes)
    assert isinstance(result.plot_failure_histogram(), Axes)
    assert isinstance(result.plot_pairwise(), Axes)
    assert isinstance(result.plot_patterns(), Figure)
    assert "H=4.668" in repr(result)


def test_groups_follow_the_column_and_the_release_policy_applies() -> None:
    frames = _frames()
    frames["google"]["group"] = ["even" if i % 2 else "odd" for i in range(len(frames["google"]))]
    result = monoculture.measure(frames, groups_from="google")
    groups = result.groups()
    assert list(groups.index) == ["even", "odd"]
    assert groups["shared_individuals"].sum() == 2000
    assert result.raw["group_homogenization"]["avg"] is not None
    withheld = monoculture.measure(_frames(), release_policy=ReleasePolicy(min_shared_individuals=5000))
    assert withheld.withheld and "release minimum" in repr(withheld)


def test_bad_input_names_the_company_and_the_row() -> None:
    frames = _frames()
    frames["microsoft"].loc[3, "failed"] = 7
    with pytest.raises(MonocultureError) as caught:
        monoculture.measure(frames)
    assert caught.value.where == "company microsoft: the data given, row 4"
    assert "failure values must be 0/1" in caught.value.message
    with pytest.raises(MonocultureError, match="no column 'failed'"):
        monoculture.measure({"a": pd.DataFrame({"id": [1]}), "b": pd.DataFrame({"id": [1], "failed": [0]})})
    with pytest.raises(MonocultureError, match="at least two companies"):
        monoculture.measure({"a": "a.csv"})
    with pytest.raises(MonocultureError, match="arrays differ in length"):
        monoculture.measure({"a": ([1, 2], [0]), "b": ([1], [1])})


def test_measure_works_in_a_plain_python_c_from_any_folder(tmp_path: Path) -> None:
    files = {name: str(example("digit", name)) for name in COMPANIES}
    code = (
        f"import monoculture; r = monoculture.measure({files!r}); "
        "print(r.shared_individuals, round(r.homogenization, 4))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2000", "4.6676"]


@pytest.mark.e2e
def test_the_private_round_gives_the_plaintext_figures_and_leaves_nothing_behind(tmp_path: Path) -> None:
    threads = threading.active_count()
    plain = monoculture.measure(_frames())
    private = monoculture.measure(_frames(), private=True)
    assert private.private and private.raw["round_id"].startswith("r-")
    assert private.raw["pattern_counts"] == plain.raw["pattern_counts"]
    assert private.homogenization == pytest.approx(plain.homogenization, rel=1e-12)
    assert threading.active_count() == threads
    assert _children() == []  # the coordinator and daemons measure started are gone
