"""`monoculture experiment run EXPERIMENT.toml --out DIR`: Bommasani et al.'s design, offline.

k companies each train a model on a dataset (a CSV or Parquet file with a label column, or one
bundled with an installed package: "sklearn:load_digits"), under each regime of how much they
share:

- `shared-data`: all train on the same sample;
- `disjoint-data`: disjoint samples of the same size;
- `probe`: a common frozen featurizer (fit once on the upstream's own split, standing in for a
  foundation model), with each company's own head trained on its own sample;
- `fine-tune`: a shared network pretrained on the upstream split, trained on by each company on
  its own sample (scikit-learn's MLP with warm_start);
- `scratch`: the same network class, trained by each company alone on its own sample.

Each company holds a random share of the test set (its population), so the shared individuals are
a strict subset. For every regime and seed, the companies' failures (prediction != label) are
written as per-company prediction files and measured (`monoculture.measure`, plaintext or the
private round). Regimes are compared with a paired bootstrap of the difference in H over the same
shared individuals (`analysis.compare`), pooled over the seeds. The split and every model's
randomness come from the seed: a run is repeatable.
"""

from __future__ import annotations

import copy
import importlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from monoculture.analysis.compare import paired_difference
from monoculture.analysis.table import pattern_indices
from monoculture.core.config import read_toml
from monoculture.core.errors import ConfigError, InputError

REGIMES = ("shared-data", "disjoint-data", "probe", "fine-tune", "scratch")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Estimator:
    """A scikit-learn estimator by import path and parameters."""

    path: str
    params: dict[str, Any] = field(default_factory=dict)

    def build(self, seed: int | None = None) -> Any:
        module_name, _, name = self.path.rpartition(".")
        try:
            kind = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError, ValueError):
            raise ConfigError(
                f"no estimator {self.path!r} can be imported", hint="give a full import path, e.g. "
                "sklearn.linear_model.LogisticRegression (is scikit-learn installed?)",
            ) from None  # fmt: skip
        params = dict(self.params)
        if seed is not None and "random_state" in kind().get_params():
            params.setdefault("random_state", seed)
        return kind(**params)


@dataclass(frozen=True)
class CompanyModel:
    name: str
    model: Estimator
    holds: float  # share of the test set this company's population holds


@dataclass(frozen=True)
class Experiment:
    source: str
    label: str
    companies: tuple[CompanyModel, ...]
    regimes: tuple[str, ...] = REGIMES
    seeds: tuple[int, ...] = (0, 1, 2)
    test_share: float = 0.4
    pretrain_share: float = 0.2
    train_size: int = 0  # records each company trains on; 0: as many as disjoint samples allow
    private: bool = False
    featurizer: Estimator = Estimator("sklearn.decomposition.PCA", {"n_components": 16})
    hidden: tuple[int, ...] = (32,)
    pretrain_epochs: int = 60
    finetune_epochs: int = 20
    folder: Path = Path(".")  # the TOML's folder: relative dataset paths are read from it
    dataset_params: dict[str, Any] = field(default_factory=dict)  # a bundled generator's arguments


# ----------------------------------------------------------------------------- reading


def _get(table: dict[str, Any], key: str, kind: type, where: str, default: Any = None) -> Any:
    if key not in table:
        if default is None:
            raise ConfigError(f"{key} is missing", where=where)
        return default
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key} must be a {kind.__name__}, not {value!r}", where=where)
    return value


def load_experiment(path: Path) -> Experiment:
    """Read and check an experiment TOML (its errors name the file, the table and the key)."""
    document = read_toml(path)
    unknown = set(document) - {"dataset", "regimes", "featurizer", "network", "company", "update"}
    if unknown:
        raise ConfigError(f"unknown table [{sorted(unknown)[0]}]", where=str(path),
                          hint="tables: [dataset], [regimes], [featurizer], [network], [[company]]",
                          )  # fmt: skip
    dataset = document.get("dataset", {})
    where = f"{path}: [dataset]"
    source = _get(dataset, "source", str, where)
    label = _get(dataset, "label", str, where, "target")
    test_share = _get(dataset, "test_share", float, where, 0.4)
    pretrain_share = _get(dataset, "pretrain_share", float, where, 0.2)
    train_size = _get(dataset, "train_size", int, where, 0)
    if not (0 < test_share < 1 and 0 <= pretrain_share < 1 and test_share + pretrain_share < 1):
        raise ConfigError("need 0 < test_share, 0 <= pretrain_share, and their sum below 1", where=where)
    regimes_table = document.get("regimes", {})
    where = f"{path}: [regimes]"
    regimes = tuple(_get(regimes_table, "run", list, where, list(REGIMES)))
    bad = [r for r in regimes if r not in REGIMES]
    if bad or not regimes:
        raise ConfigError(
            f"unknown regime {bad[0] if bad else '(none)'}", where=where, hint=f"one of {', '.join(REGIMES)}"
        )
    seeds = tuple(_get(regimes_table, "seeds", list, where, [0, 1, 2]))
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError("seeds must be a list of integers", where=where)
    private = _get(regimes_table, "private", bool, where, False)
    featurizer_table = document.get("featurizer", {})
    featurizer = Estimator(
        _get(featurizer_table, "model", str, f"{path}: [featurizer]", "sklearn.decomposition.PCA"),
        dict(_get(featurizer_table, "params", dict, f"{path}: [featurizer]", {"n_components": 16})),
    )
    network = document.get("network", {})
    where = f"{path}: [network]"
    hidden = tuple(_get(network, "hidden", list, where, [32]))
    companies = []
    for n, table in enumerate(document.get("company", [])):
        where = f"{path}: [[company]] #{n + 1}"
        holds = _get(table, "holds", float, where, 0.8)
        if not 0 < holds <= 1:
            raise ConfigError(f"holds must be in (0, 1], not {holds}", where=where)
        model = Estimator(_get(table, "model", str, where), dict(_get(table, "params", dict, where, {})))
        companies.append(CompanyModel(_get(table, "name", str, where), model, holds))
    if len(companies) < 2:
        raise ConfigError("an experiment needs at least two [[company]] tables", where=str(path))
    if len({c.name for c in companies}) != len(companies):
        raise ConfigError("two companies have the same name", where=str(path))
    return Experiment(
        source, label, tuple(companies), regimes, seeds, test_share, pretrain_share, train_size, private,
        featurizer, hidden, _get(network, "pretrain_epochs", int, where, 60),
        _get(network, "finetune_epochs", int, where, 20), path.parent,
        dict(_get(dataset, "params", dict, f"{path}: [dataset]", {})),
    )  # fmt: skip


def load_dataset(experiment: Experiment) -> tuple[npt.NDArray[np.float64], npt.NDArray[Any]]:
    """(features, labels): a package's bundled dataset ("sklearn:load_digits"), one of its
    generators with [dataset] params ("sklearn:make_classification"), or a file."""
    source = experiment.source
    if source.startswith("sklearn:"):
        try:
            loader = getattr(importlib.import_module("sklearn.datasets"), source.split(":", 1)[1])
            bunch = loader(**experiment.dataset_params)
        except (ImportError, AttributeError, TypeError) as exc:
            raise ConfigError(
                f"no bundled dataset {source!r} ({exc})", hint="e.g. sklearn:load_digits"
            ) from None
        if isinstance(bunch, tuple):  # a generator: (X, y)
            return np.asarray(bunch[0], dtype=np.float64), np.asarray(bunch[1])
        return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target)
    path = Path(source) if Path(source).is_absolute() else experiment.folder / source
    if not path.exists():
        raise InputError("file not found", where=str(path))
    import pandas as pd

    frame = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
    if experiment.label not in frame.columns:
        raise InputError(f"has no label column {experiment.label!r}", where=str(path))
    labels = frame.pop(experiment.label).to_numpy()
    try:
        return frame.to_numpy(dtype=np.float64), labels
    except ValueError as exc:
        raise InputError(f"holds a feature that is not numeric ({exc})", where=str(path)) from None


# ----------------------------------------------------------------------------- training


@dataclass(frozen=True)
class Split:
    test: npt.NDArray[np.int64]
    pretrain: npt.NDArray[np.int64]
    samples: dict[str, npt.NDArray[np.int64]]  # each company's disjoint training sample
    shared: npt.NDArray[np.int64]  # the one sample of shared-data
    holds: dict[str, npt.NDArray[np.int64]]  # each company's population (indices into test)

    def shared_population(self) -> npt.NDArray[np.int64]:
        """The test individuals every company holds (indices into test, ascending)."""
        common = set.intersection(*(set(held.tolist()) for held in self.holds.values()))
        return np.array(sorted(common), dtype=np.int64)


def failure_patterns(
    predicted: dict[str, npt.NDArray[Any]], truth: npt.NDArray[Any], names: Sequence[str], shared: Any
) -> npt.NDArray[np.int64]:
    """The failure pattern of each shared individual (the researcher holds them all: the paired
    comparisons resample these)."""
    return pattern_indices([(predicted[name] != truth).astype(np.int64)[shared] for name in names])


def split(experiment: Experiment, size: int, seed: int, subset: int = 0) -> Split:
    """The seed's test set, upstream split and training samples; `subset` > 0 draws other
    training samples from the same pool (the test set and populations unchanged)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(size)
    n_test = round(experiment.test_share * size)
    n_pre = round(experiment.pretrain_share * size)
    test, pretrain, pool = order[:n_test], order[n_test : n_test + n_pre], order[n_test + n_pre :]
    if subset:
        pool = np.random.default_rng([seed, subset]).permutation(pool)
    k = len(experiment.companies)
    per_company = experiment.train_size or len(pool) // k
    if per_company * k > len(pool) or per_company < 2:
        raise ConfigError(
            f"train_size {per_company} x {k} companies needs {per_company * k} records, and the pool "
            f"holds {len(pool)}", hint="lower train_size, test_share or pretrain_share",
        )  # fmt: skip
    samples = {
        c.name: pool[i * per_company : (i + 1) * per_company] for i, c in enumerate(experiment.companies)
    }
    holds = {
        c.name: np.sort(rng.choice(len(test), size=max(1, round(c.holds * len(test))), replace=False))
        for c in experiment.companies
    }
    return Split(test, pretrain, samples, samples[experiment.companies[0].name], holds)


def _network(experiment: Experiment, epochs: int, seed: int) -> Any:
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=experiment.hidden, max_iter=epochs, random_state=seed)


def _quiet(call: Callable[..., Any], *args: Any) -> Any:
    """`call(*args)` without scikit-learn's convergence warnings (a model stopped at its epochs)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return call(*args)


def predictions(
    experiment: Experiment,
    regime: str,
    x: npt.NDArray[np.float64],
    y: npt.NDArray[Any],
    parts: Split,
    seed: int,
) -> dict[str, npt.NDArray[Any]]:
    """Each company's predictions on the whole test set under `regime`."""
    out: dict[str, npt.NDArray[Any]] = {}
    test = x[parts.test]
    if regime == "probe":
        featurizer = experiment.featurizer.build(seed)
        _quiet(featurizer.fit, x[parts.pretrain], y[parts.pretrain])
    if regime == "fine-tune":
        base = _network(experiment, experiment.pretrain_epochs, seed)
        _quiet(base.fit, x[parts.pretrain], y[parts.pretrain])
    for n, company in enumerate(experiment.companies):
        mine = parts.shared if regime == "shared-data" else parts.samples[company.name]
        company_seed = seed * 1000 + n
        if regime in ("shared-data", "disjoint-data"):
            model = company.model.build(company_seed)
            _quiet(model.fit, x[mine], y[mine])
            out[company.name] = model.predict(test)
        elif regime == "probe":
            head = company.model.build(company_seed)
            _quiet(head.fit, featurizer.transform(x[mine]), y[mine])
            out[company.name] = head.predict(featurizer.transform(test))
        elif regime == "fine-tune":
            network = copy.deepcopy(base)
            network.set_params(warm_start=True, max_iter=experiment.finetune_epochs)
            _quiet(network.fit, x[mine], y[mine])
            out[company.name] = network.predict(test)
        else:  # scratch
            network = _network(
                experiment, experiment.pretrain_epochs + experiment.finetune_epochs, company_seed
            )
            _quiet(network.fit, x[mine], y[mine])
            out[company.name] = network.predict(test)
    return out


# ----------------------------------------------------------------------------- running


@dataclass
class RegimeRun:
    regime: str
    seed: int
    result: dict[str, Any]
    accuracy: dict[str, float]
    patterns: npt.NDArray[np.int64]  # pattern index of each shared individual (plaintext, for tests)


def _write_predictions(
    folder: Path, ids: Sequence[str], failed: npt.NDArray[Any], held: npt.NDArray[np.int64]
) -> Path:
    folder.parent.mkdir(parents=True, exist_ok=True)
    lines = ["id,failed"] + [f"{ids[i]},{int(failed[i])}" for i in held]
    folder.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def run_experiment(experiment: Experiment, out: Path, progress: Progress = print) -> dict[str, Any]:
    """Train, write the prediction files, measure every regime and seed, compare the regimes.
    Writes DIR/predictions/REGIME/seed-S/COMPANY.csv, DIR/results/REGIME-seed-S.json and
    DIR/summary.json; returns the summary."""
    from monoculture.research.api import measure

    x, y = load_dataset(experiment)
    out.mkdir(parents=True, exist_ok=True)
    runs: list[RegimeRun] = []
    names = [c.name for c in experiment.companies]
    for seed in experiment.seeds:
        parts = split(experiment, len(y), seed)
        ids = [f"x{int(i)}" for i in parts.test]
        shared = parts.shared_population()
        for regime in experiment.regimes:
            progress(f"seed {seed}, {regime}: training {len(names)} companies")
            predicted = predictions(experiment, regime, x, y, parts, seed)
            truth = y[parts.test]
            files = {}
            for name in names:
                failed = (predicted[name] != truth).astype(np.int64)
                path = out / "predictions" / regime / f"seed-{seed}" / f"{name}.csv"
                files[name] = _write_predictions(path, ids, failed, parts.holds[name])
            result = measure(files, private=experiment.private).raw
            (out / "results").mkdir(exist_ok=True)
            (out / "results" / f"{regime}-seed-{seed}.json").write_text(
                json.dumps(result, indent=2), encoding="utf-8"
            )
            accuracy = {name: float((predicted[name] == truth).mean()) for name in names}
            patterns = failure_patterns(predicted, truth, names, shared)
            runs.append(RegimeRun(regime, seed, result, accuracy, patterns))
            h = result.get("homogenization")
            progress(f"seed {seed}, {regime}: N = {result['shared_individuals']}, H = {_f(h)}")
    summary = summarise(experiment, runs)
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out / "summary.md").write_text(summary_markdown(summary), encoding="utf-8")
    return summary


def summarise(experiment: Experiment, runs: Sequence[RegimeRun]) -> dict[str, Any]:
    """Per regime: H per seed, the mean H (over the seeds where it is defined, said so), the mean
    failure rate and S; and the paired comparison of every regime with the first, and of
    fine-tune with scratch (the like-for-like contrast: the same network class, shared weights
    or not)."""
    k = len(experiment.companies)
    by = {(r.regime, r.seed): r for r in runs}
    regimes: dict[str, Any] = {}
    for regime in experiment.regimes:
        mine = [by[(regime, s)] for s in experiment.seeds]
        hs = [r.result.get("homogenization") for r in mine]
        defined = [h for h in hs if h is not None]
        rates = [r for run in mine for r in (run.result.get("failure_rates") or {}).values() if r is not None]
        systemic = [run.result.get("systemic_failure_rate") for run in mine]
        regimes[regime] = {
            "homogenization": {str(s): h for s, h in zip(experiment.seeds, hs, strict=True)},
            "mean_homogenization": float(np.mean(defined)) if defined else None,
            "seeds_with_h": len(defined),
            "mean_failure_rate": float(np.mean(rates)) if rates else None,
            "mean_systemic_failure_rate": float(np.mean([v for v in systemic if v is not None]))
            if any(v is not None for v in systemic)
            else None,
            "mean_accuracy": {
                c.name: float(np.mean([r.accuracy[c.name] for r in mine])) for c in experiment.companies
            },
            "shared_individuals": {str(r.seed): r.result["shared_individuals"] for r in mine},
        }
    baseline = experiment.regimes[0]
    pairs_to_compare = [(regime, baseline) for regime in experiment.regimes[1:]]
    if "fine-tune" in experiment.regimes and "scratch" in experiment.regimes:
        pairs_to_compare.append(("fine-tune", "scratch"))
    comparisons = {}
    for regime, against in pairs_to_compare:
        pairs = [(by[(against, s)].patterns, by[(regime, s)].patterns) for s in experiment.seeds]
        rng = np.random.default_rng(list(experiment.seeds))
        comparisons[f"{regime} vs {against}"] = paired_difference(pairs, k, rng=rng).to_dict()
    return {
        "dataset": experiment.source,
        "companies": [c.name for c in experiment.companies],
        "seeds": list(experiment.seeds),
        "private": experiment.private,
        "regimes": regimes,
        "comparisons": comparisons,
    }


def _f(value: Any) -> str:
    return (
        "undefined" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"
    )


def _p(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return "< 0.001" if value < 0.001 else f"{value:.2g}"


def summary_markdown(summary: dict[str, Any]) -> str:
    seeds = summary["seeds"]
    lines = [
        f"# Experiment on {summary['dataset']}",
        "",
        f"Companies: {', '.join(summary['companies'])}; seeds {', '.join(map(str, seeds))}; "
        f"{'private rounds' if summary['private'] else 'plaintext'}.",
        "",
        "| regime | " + " | ".join(f"H, seed {s}" for s in seeds)
        + " | mean H | mean fail_i | mean S | mean accuracy |",
        "|---|" + "---|" * (len(seeds) + 4),
    ]  # fmt: skip
    for regime, row in summary["regimes"].items():
        accuracy = sum(row["mean_accuracy"].values()) / len(row["mean_accuracy"])
        hs = " | ".join(_f(row["homogenization"][str(s)]) for s in seeds)
        mean = _f(row["mean_homogenization"])
        if row["seeds_with_h"] < len(seeds):
            mean += f" ({row['seeds_with_h']} seeds)"
        lines.append(
            f"| {regime} | {hs} | {mean} | {_f(row['mean_failure_rate'])} | "
            f"{_f(row['mean_systemic_failure_rate'])} | {accuracy:.3f} |"
        )
    lines += ["", "| comparison | difference in H | 95% CI | p |", "|---|---|---|---|"]
    notes = []
    for name, c in summary["comparisons"].items():
        interval = f"{_f(c['ci95'][0])} to {_f(c['ci95'][1])}"
        lines.append(f"| {name} | {_f(c['difference'])} | {interval} | {_p(c['p_value'])} |")
        if c.get("note"):
            notes.append(f"{name}: {c['note']}")
    method = next(iter(summary["comparisons"].values()))["method"] if summary["comparisons"] else ""
    lines += [
        "",
        "Difference: mean over seeds of H(regime) - H(other), on the same shared individuals; "
        f"{method}. H = S / prod fail_i also grows as failure rates fall: read it beside fail_i and S.",
    ]
    lines += [f"Note: {n}" for n in notes]
    return "\n".join(lines) + "\n"
