"""`monoculture experiment run` and `monoculture sheet`: Bommasani et al.'s regimes and Ganesh's
multiplicity sheets on scikit-learn's bundled digits (offline), and the paired comparison."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from monoculture.analysis.compare import h_of_counts, paired_difference
from monoculture.analysis.metrics import homogenization
from monoculture.analysis.table import PatternTable, pattern_indices
from monoculture.core.errors import ConfigError
from monoculture.research.experiment import load_experiment, run_experiment
from monoculture.research.sheet import load_sheet, run_sheet

SMALL = """
[dataset]
source = "sklearn:load_digits"
test_share = 0.4
pretrain_share = 0.2
train_size = 60

[regimes]
run = ["disjoint-data", "shared-data", "probe", "fine-tune", "scratch"]
seeds = [0, 1]
private = {private}

[featurizer]
model = "sklearn.decomposition.PCA"
params = {{ n_components = 8 }}

[network]
hidden = [16]
pretrain_epochs = 40
finetune_epochs = 10

[[company]]
name = "acme"
model = "sklearn.linear_model.LogisticRegression"
params = {{ max_iter = 500 }}
holds = 0.8

[[company]]
name = "globex"
model = "sklearn.tree.DecisionTreeClassifier"
params = {{ max_depth = 6 }}
holds = 0.7
"""


def _toml(tmp_path: Path, text: str, name: str = "e.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_h_of_counts_is_the_metrics_h() -> None:
    rng = np.random.default_rng(3)
    for parties in (2, 3, 4):
        counts = rng.integers(0, 40, size=2**parties)
        table = PatternTable(tuple("abcd"[:parties]), tuple(int(c) for c in counts))
        assert float(h_of_counts(counts, parties)) == pytest.approx(homogenization(table)[0], rel=1e-12)


def test_the_paired_difference_sees_a_real_shift_and_not_a_null_one() -> None:
    rng = np.random.default_rng(5)
    independent = rng.integers(0, 2, size=(3, 600))
    correlated = independent.copy()
    correlated[1] = np.where(rng.random(600) < 0.6, correlated[0], correlated[1])  # b copies a often
    a = pattern_indices(list(independent))
    same = paired_difference([(a, a)], 3, replicates=500, rng=np.random.default_rng(1))
    assert same.difference == 0 and same.ci95 == (0.0, 0.0)
    assert "conditional on the one set of trained models" in same.to_dict()["method"]
    shifted = paired_difference(
        [(a, pattern_indices(list(correlated)))], 3, replicates=500, rng=np.random.default_rng(1)
    )
    assert shifted.difference > 0 and shifted.ci95[0] > 0 and shifted.p_value < 0.01


def test_an_experiment_writes_predictions_results_and_a_repeatable_summary(tmp_path: Path) -> None:
    experiment = load_experiment(_toml(tmp_path, SMALL.format(private="false")))
    first = run_experiment(experiment, tmp_path / "one", progress=lambda _: None)
    again = run_experiment(experiment, tmp_path / "two", progress=lambda _: None)
    assert first == again  # the seeds fix the split, every model and the bootstrap
    assert set(first["regimes"]) == {"disjoint-data", "shared-data", "probe", "fine-tune", "scratch"}
    expected = {f"{r} vs disjoint-data" for r in list(first["regimes"])[1:]} | {"fine-tune vs scratch"}
    assert set(first["comparisons"]) == expected
    assert "two-level bootstrap" in first["comparisons"]["shared-data vs disjoint-data"]["method"]
    files = sorted((tmp_path / "one" / "predictions").rglob("*.csv"))
    assert len(files) == 5 * 2 * 2
    result = json.loads((tmp_path / "one" / "results" / "shared-data-seed-0.json").read_text())
    assert result["companies"] == ["acme", "globex"]
    # acme holds 80% and globex 70% of the test set: the shared individuals are a strict subset
    assert 0 < result["shared_individuals"] < round(0.4 * 1797) * 0.75
    assert "| shared-data |" in (tmp_path / "one" / "summary.md").read_text()


@pytest.mark.e2e
def test_a_private_experiment_gives_the_plaintext_figures(tmp_path: Path) -> None:
    text = (
        SMALL.format(private="true")
        .replace(
            'run = ["disjoint-data", "shared-data", "probe", "fine-tune", "scratch"]',
            'run = ["disjoint-data", "shared-data"]',
        )
        .replace("seeds = [0, 1]", "seeds = [0]")
    )
    private = run_experiment(
        load_experiment(_toml(tmp_path, text)), tmp_path / "private", progress=lambda _: None
    )
    plain = run_experiment(
        load_experiment(_toml(tmp_path, text.replace("private = true", "private = false"), "p.toml")),
        tmp_path / "plain",
        progress=lambda _: None,
    )
    assert private["regimes"] == plain["regimes"] and private["private"] and not plain["private"]
    result = json.loads((tmp_path / "private" / "results" / "shared-data-seed-0.json").read_text())
    assert result["round_id"].startswith("r-")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('"fine-tune", "scratch"]', '"fine-tune", "scratch", "telepathy"]'), "unknown regime telepathy"),
        (('source = "sklearn:load_digits"', ""), "source is missing"),
        (("holds = 0.7", "holds = 1.5"), "holds must be in (0, 1]"),
        (("train_size = 60", "train_size = 900"), "needs 1800 records"),
        (('source = "sklearn:load_digits"', 'source = "sklearn:load_nothing"'), "no bundled dataset"),
    ],
)
def test_a_bad_experiment_names_the_file_and_the_table(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    path = _toml(tmp_path, SMALL.format(private="false").replace(*change))
    args = [
        sys.executable,
        "-m",
        "monoculture",
        "experiment",
        "run",
        str(path),
        "--out",
        str(tmp_path / "out"),
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    with pytest.raises(ConfigError):
        run_experiment(load_experiment(path), tmp_path / "again", progress=lambda _: None)


SHEET = """
[dataset]
source = "sklearn:load_digits"
train_size = 80

[sheet]
seeds = [0, 1]
select_within = 0.05

[default]
model = "sklearn.linear_model.LogisticRegression"
params = { max_iter = 300, C = 1.0 }

[[axis]]
name = "regularisation"
param = "C"
values = [1.0, 0.01]

[[axis]]
name = "model class"
param = "@model"
values = ["sklearn.linear_model.LogisticRegression", "sklearn.tree.DecisionTreeClassifier"]

[[company]]
name = "acme"

[[company]]
name = "globex"
"""


def test_a_sheet_reads_at_three_levels_with_accuracy_beside_h(tmp_path: Path) -> None:
    summary = run_sheet(
        load_sheet(_toml(tmp_path, SHEET, "s.toml")), tmp_path / "sheet", progress=lambda _: None
    )
    cells = summary["cells"]
    assert len(cells) == 2 * 4 and all(0 < c["accuracy"] <= 1 for c in cells)
    hs = [c["homogenization"] for c in cells if c["homogenization"] is not None]
    assert summary["delta_max_all"]["delta_max"] == pytest.approx(max(hs) - min(hs))
    row = [c["homogenization"] for c in cells if c["seed"] == 0 and c["axis"] == "regularisation"]
    assert summary["axes"]["regularisation"]["per_row"]["0"]["delta_max"] == pytest.approx(
        max(row) - min(row)
    )
    defaults = {
        c["homogenization"]
        for c in cells
        if c["seed"] == 1 and c["value"].endswith(("1.0", "LogisticRegression"))
    }
    assert len(defaults) == 1  # the default configuration is one model, whichever axis shows it
    distinct = [c for c in cells if not c["repeated"]]  # the default shown once per seed
    best = max(c["accuracy"] for c in distinct)
    assert summary["selection"]["cells"] == sum(c["accuracy"] >= best - 0.05 for c in distinct)
    text = (tmp_path / "sheet" / "sheet.md").read_text()
    assert "Δmax^all" in text and "DecisionTreeClassifier" in text
    assert (tmp_path / "sheet" / "sheet.csv").read_text().count("\n") == 1 + len(cells)
    page = (tmp_path / "sheet" / "sheet.html").read_text()
    assert "<table>" in page and "Δmax^all" in page and page.count("data:image/png;base64,") == 1
    assert "<script" not in page and "http" not in page.split("<body>")[1]


def test_a_sheet_selects_on_any_named_metric(tmp_path: Path) -> None:
    text = SHEET.replace(
        "select_within = 0.05",
        'select_within = 0.05\nselect_on = "f1_score"\nselect_params = { average = "macro" }',
    )
    summary = run_sheet(
        load_sheet(_toml(tmp_path, text, "s.toml")), tmp_path / "sheet", progress=lambda _: None
    )
    assert summary["selection"]["select_on"] == "f1_score"
    assert all(c["metric"] != c["accuracy"] for c in summary["cells"])  # macro F1, not accuracy
    distinct = [c for c in summary["cells"] if not c["repeated"]]
    best = max(c["metric"] for c in distinct)
    assert summary["selection"]["cells"] == sum(c["metric"] >= best - 0.05 for c in distinct)
    with pytest.raises(ConfigError, match=r"not a function of sklearn\.metrics"):
        load_sheet(
            _toml(tmp_path, SHEET.replace("select_within = 0.05", 'select_on = "telepathy"'), "bad.toml")
        )


ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("example", "kind"), [("upstream-update.toml", "downstream"), ("move-to-shared-data.toml", "ecosystem")]
)
def test_the_bundled_updates_are_flagged_self_defeating(tmp_path: Path, example: str, kind: str) -> None:
    """The paper's kind: the upstream's own test loss falls, a company's failure rate rises
    significantly after retraining. The ecosystem kind: acme's failure rate falls significantly
    while S and H rise significantly. Each in every seed of the bundled example."""
    from monoculture.research.update import load_update, run_update

    update = load_update(ROOT / "examples" / "experiments" / example)
    summary = run_update(update, tmp_path / "run", progress=lambda _: None)
    for seed in summary["seeds"]:
        kinds = {flag["kind"] for flag in seed["comparison"]["self_defeating"]}
        assert kind in kinds, seed["comparison"]
        if kind == "downstream":
            before, after = seed["upstream_loss"]
            assert after < before  # an improvement on its own objective
        else:
            assert seed["comparison"]["failure_rates"]["acme"]["significant"] == "down"
            assert seed["comparison"]["homogenization"]["significant"] == "up"
    assert "Self-defeating" in (tmp_path / "run" / "summary.md").read_text()


def test_compare_flags_only_what_is_significant() -> None:
    from monoculture.analysis.compare import compare_results

    def result(rates: list[float], s: float, h: float, width: float) -> dict:
        names = ["a", "b"]
        return {
            "companies": names, "failure_rates": dict(zip(names, rates, strict=True)),
            "failure_rate_ci95": {n: [r - width, r + width] for n, r in zip(names, rates, strict=True)},
            "systemic_failure_rate": s, "systemic_failure_rate_ci95": [s - width, s + width],
            "homogenization": h, "homogenization_ci95": [h - 10 * width, h + 10 * width],
        }  # fmt: skip

    old = result([0.3, 0.3], 0.15, 1.6, 0.01)
    flagged = compare_results(old, result([0.2, 0.3], 0.19, 3.1, 0.01))
    assert [f["kind"] for f in flagged["self_defeating"]] == ["ecosystem"]
    assert (
        flagged["failure_rates"]["a"]["significant"] == "down"
        and flagged["homogenization"]["significant"] == "up"
    )
    noisy = compare_results(old, result([0.2, 0.3], 0.19, 3.1, 0.2))
    assert noisy["self_defeating"] == []  # the same changes, inside wide intervals
    downstream = compare_results(old, result([0.4, 0.3], 0.15, 1.6, 0.01), upstream_improved=True)
    assert [f["kind"] for f in downstream["self_defeating"]] == ["downstream"]
    assert compare_results(old, result([0.4, 0.3], 0.15, 1.6, 0.01))["self_defeating"] == []


def test_seeds_are_resampled_so_training_variation_widens_the_interval() -> None:
    """Two seeds whose differences disagree (one +, one -): resampling individuals alone within
    each would give a narrow interval around their mean; resampling the seeds too covers both."""
    rng = np.random.default_rng(8)
    base = rng.integers(0, 2, size=(2, 800))
    shifted = base.copy()
    shifted[1] = np.where(rng.random(800) < 0.5, shifted[0], shifted[1])  # H up in seed "up"
    anti = base.copy()
    anti[1] = np.where(rng.random(800) < 0.5, 1 - anti[0], anti[1])  # H down in seed "down"
    a = pattern_indices(list(base))
    up, down = pattern_indices(list(shifted)), pattern_indices(list(anti))
    pooled = paired_difference([(a, up), (a, down)], 2, replicates=400, rng=np.random.default_rng(2))
    one = [paired_difference([(a, b)], 2, replicates=400, rng=np.random.default_rng(2)) for b in (up, down)]
    assert pooled.ci95[0] <= one[1].difference and one[0].difference <= pooled.ci95[1]
    assert pooled.seeds == 2 and pooled.dropped == 0.0


def test_no_interval_when_h_is_often_undefined() -> None:
    patterns = np.zeros(200, dtype=np.int64)  # nobody failed by company b: H undefined
    patterns[:3] = 0b11
    patterns[3:60] = 0b10
    result = paired_difference([(patterns, patterns)], 2, replicates=300, rng=np.random.default_rng(1))
    assert math.isnan(result.ci95[0]) and "undefined" in result.note
