"""`monoculture sheet SHEET.toml --out DIR`: a multiplicity sheet of H (Ganesh; McGill and Mila).

Rows are random seeds. Each axis (a hyperparameter, the model class "@model", the training subset
"@subset") is a group of columns, its default value first; every cell changes one axis around the
default, for every company or for one (`vary`). A cell trains the companies (disjoint samples, as
in the experiment's `disjoint-data` regime), measures them and records H with its 95% interval and
the companies' mean accuracy beside it, so equally accurate models with differently homogenized
outcomes show side by side. Three levels of reading:

1. every raw H (with accuracy);
2. Δmax per axis: within each row (over that axis's values) and over the seeds of each column;
3. Δmax^all: the largest minus the smallest H of the whole sheet, one score.

A Δmax whose two extreme cells have overlapping intervals is marked "within noise". The selection
view keeps the cells a team would pick on accuracy (within `select_within` of the best) and says how
far H still spreads among them (Ganesh's unseen-metric question).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from monoculture.core.config import read_toml
from monoculture.core.errors import ConfigError
from monoculture.research.experiment import (
    CompanyModel,
    Estimator,
    Experiment,
    Progress,
    _get,
    _quiet,
    load_dataset,
    split,
)


@dataclass(frozen=True)
class Axis:
    name: str
    param: str  # an estimator parameter, "@model" (an import path) or "@subset" (which sample)
    values: tuple[Any, ...]  # the default first


@dataclass(frozen=True)
class Sheet:
    experiment: Experiment  # dataset, companies (their models are the default), seeds
    axes: tuple[Axis, ...]
    vary: str = "all"  # "all" or one company's name
    select_within: float = 0.01  # the metric within this of the best is "as good"
    select_on: str = "accuracy"  # or a function of sklearn.metrics taking (y_true, y_pred)
    select_params: dict[str, Any] = field(default_factory=dict)  # its keyword arguments


@dataclass(frozen=True)
class Cell:
    seed: int
    axis: str
    value: Any
    homogenization: float | None
    ci95: tuple[float, float] | None
    accuracy: float
    metric: float  # the selection metric (the companies' mean), = accuracy by default
    repeated: bool = False  # the default configuration shown again under another axis


def load_sheet(path: Path) -> Sheet:
    document = read_toml(path)
    where = f"{path}: [dataset]"
    dataset = document.get("dataset", {})
    default = document.get("default", {})
    model = Estimator(
        _get(default, "model", str, f"{path}: [default]"),
        dict(_get(default, "params", dict, f"{path}: [default]", {})),
    )
    table = document.get("sheet", {})
    companies = []
    for n, company in enumerate(document.get("company", [])):
        holds = _get(company, "holds", float, f"{path}: [[company]] #{n + 1}", 0.8)
        companies.append(
            CompanyModel(_get(company, "name", str, f"{path}: [[company]] #{n + 1}"), model, holds)
        )
    if len(companies) < 2:
        raise ConfigError("a sheet needs at least two [[company]] tables", where=str(path))
    experiment = Experiment(
        _get(dataset, "source", str, where), _get(dataset, "label", str, where, "target"), tuple(companies),
        ("disjoint-data",), tuple(_get(table, "seeds", list, f"{path}: [sheet]", [0, 1, 2, 3, 4])),
        _get(dataset, "test_share", float, where, 0.4), 0.0, _get(dataset, "train_size", int, where, 0),
        folder=path.parent,
    )  # fmt: skip
    axes = []
    for n, axis in enumerate(document.get("axis", [])):
        here = f"{path}: [[axis]] #{n + 1}"
        values = tuple(_get(axis, "values", list, here))
        if len(values) < 2:
            raise ConfigError("an axis needs its default value and at least one other", where=here)
        axes.append(Axis(_get(axis, "name", str, here), _get(axis, "param", str, here), values))
    if not axes:
        raise ConfigError("a sheet needs at least one [[axis]]", where=str(path))
    vary = _get(table, "vary", str, f"{path}: [sheet]", "all")
    if vary != "all" and vary not in {c.name for c in companies}:
        raise ConfigError(f'vary must be "all" or a company\'s name, not {vary!r}', where=f"{path}: [sheet]")
    where = f"{path}: [sheet]"
    select_on = _get(table, "select_on", str, where, "accuracy")
    params = dict(_get(table, "select_params", dict, where, {}))
    _metric_function(select_on, where)  # refused here, before anything trains
    return Sheet(
        experiment, tuple(axes), vary, _get(table, "select_within", float, where, 0.01), select_on, params
    )


def _metric_function(name: str, where: str = "") -> Any:
    """The selection metric: "accuracy", or a function of sklearn.metrics of (y_true, y_pred)."""
    if name == "accuracy":
        return None
    import sklearn.metrics

    function = getattr(sklearn.metrics, name, None)
    if not callable(function) or name.startswith("_"):
        raise ConfigError(
            f"select_on {name!r} is not a function of sklearn.metrics", where=where,
            hint="e.g. balanced_accuracy_score, f1_score (with select_params = { average = \"macro\" })",
        )  # fmt: skip
    return function


def _configured(model: Estimator, axis: Axis, value: Any) -> Estimator:
    if axis.param == "@model":
        return Estimator(str(value), {})
    if axis.param == "@subset":
        return model
    params = dict(model.params)
    params[axis.param] = tuple(value) if isinstance(value, list) else value
    return replace(model, params=params)


def run_sheet(sheet: Sheet, out: Path, progress: Progress = print) -> dict[str, Any]:
    from monoculture.research.api import measure

    experiment = sheet.experiment
    x, y = load_dataset(experiment)
    metric = _metric_function(sheet.select_on)
    cells: list[Cell] = []
    for seed in experiment.seeds:
        for axis in sheet.axes:
            for value in axis.values:
                if cells and value == axis.values[0] and axis is not sheet.axes[0]:
                    # the default configuration: measured once per seed, under the first axis
                    first = next(c for c in cells if c.seed == seed and c.axis == sheet.axes[0].name)
                    cells.append(replace(first, axis=axis.name, value=value, repeated=True))
                    continue
                subset = int(value) if axis.param == "@subset" else 0
                parts = split(experiment, len(y), seed, subset)
                files, accuracies, scores = {}, [], []
                for n, company in enumerate(experiment.companies):
                    varied = sheet.vary in ("all", company.name)
                    model = (_configured(company.model, axis, value) if varied else company.model).build(
                        seed * 1000 + n
                    )
                    mine = parts.samples[company.name]
                    _quiet(model.fit, x[mine], y[mine])
                    predicted = model.predict(x[parts.test])
                    accuracies.append(float((predicted == y[parts.test]).mean()))
                    if metric is not None:
                        scores.append(float(metric(y[parts.test], predicted, **sheet.select_params)))
                    failed = predicted != y[parts.test]
                    held = parts.holds[company.name]
                    files[company.name] = ([f"x{int(parts.test[i])}" for i in held], failed[held].astype(int))
                result = measure(files).raw
                ci = result.get("homogenization_ci95")
                interval = None if ci is None else (ci[0], ci[1])
                h = result.get("homogenization")
                accuracy = float(np.mean(accuracies))
                score = accuracy if metric is None else float(np.mean(scores))
                cells.append(Cell(seed, axis.name, value, h, interval, accuracy, score))
                progress(
                    f"seed {seed}, {axis.name} = {value}: H = {_f(h)}, accuracy {cells[-1].accuracy:.3f}"
                )
    summary = summarise_sheet(sheet, cells)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sheet.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    _write_csv(out / "sheet.csv", cells)
    text = sheet_markdown(sheet, summary)
    (out / "sheet.md").write_text(text, encoding="utf-8")
    from monoculture.report.sheet import render_sheet_html

    (out / "sheet.html").write_text(render_sheet_html(summary, text), encoding="utf-8")
    return summary


def _spread(cells: list[Cell]) -> dict[str, Any]:
    """Δmax over `cells`, and whether the two extreme cells' intervals overlap (None: one of them
    has no two-sided interval, so it is undetermined). Overlap is a weak guide only: extremes
    picked out of many equal cells fail to overlap more often than 5%, and cells of one seed share
    people (a review measured 77% non-overlap among 45 equal cells)."""
    defined = [c for c in cells if c.homogenization is not None]
    if len(defined) < 2:
        return {"delta_max": None, "within_noise": None}
    top = max(defined, key=lambda c: c.homogenization or 0.0)
    bottom = min(defined, key=lambda c: c.homogenization or 0.0)
    overlap = None
    if top.ci95 is not None and bottom.ci95 is not None:
        overlap = top.ci95[0] <= bottom.ci95[1]
    return {
        "delta_max": (top.homogenization or 0.0) - (bottom.homogenization or 0.0),
        "within_noise": overlap,
    }


def summarise_sheet(sheet: Sheet, cells: list[Cell]) -> dict[str, Any]:
    seeds = sheet.experiment.seeds
    axes: dict[str, Any] = {}
    for axis in sheet.axes:
        mine = [c for c in cells if c.axis == axis.name]
        axes[axis.name] = {
            "values": [str(v) for v in axis.values],
            "per_row": {str(s): _spread([c for c in mine if c.seed == s]) for s in seeds},
            "per_column": {str(v): _spread([c for c in mine if c.value == v]) for v in axis.values},
        }
    distinct = [c for c in cells if not c.repeated]
    best = max(c.metric for c in distinct)
    selected = [c for c in distinct if c.metric >= best - sheet.select_within]
    return {
        "dataset": sheet.experiment.source,
        "companies": [c.name for c in sheet.experiment.companies],
        "vary": sheet.vary,
        "cells": [
            {
                "seed": c.seed,
                "axis": c.axis,
                "value": str(c.value),
                "homogenization": c.homogenization,
                "ci95": list(c.ci95) if c.ci95 else None,
                "accuracy": c.accuracy,
                "metric": c.metric,
                "repeated": c.repeated,
            }
            for c in cells
        ],
        "axes": axes,
        "delta_max_all": _spread(distinct),
        "selection": {
            "select_on": sheet.select_on,
            "select_within": sheet.select_within,
            "best": best,
            "cells": len(selected),
            **_spread(selected),
        },
    }


def _f(value: Any) -> str:
    return (
        "undefined" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"
    )


def _show(value: Any) -> str:
    """A value as a column shows it: an estimator by its class name."""
    text = str(value)
    return text.rsplit(".", 1)[-1] if text.startswith("sklearn.") else text


def _delta(spread: dict[str, Any]) -> str:
    if spread["delta_max"] is None:
        return "—"
    if spread["within_noise"] is None:
        return _f(spread["delta_max"]) + " (noise undetermined)"
    return _f(spread["delta_max"]) + (" (within noise)" if spread["within_noise"] else "")


def sheet_markdown(sheet: Sheet, summary: dict[str, Any]) -> str:
    cells = summary["cells"]
    seeds = sheet.experiment.seeds
    lines = [f"# Multiplicity sheet of H on {summary['dataset']}", "",
             f"Companies: {', '.join(summary['companies'])}; varied: {summary['vary']}. Each cell: H "
             "(mean accuracy); the default value of each axis first.", ""]  # fmt: skip
    header = ["seed"] + [f"{a.name} = {_show(v)}" for a in sheet.axes for v in a.values]
    header += [f"Δmax {a.name}" for a in sheet.axes]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for seed in seeds:
        row = [str(seed)]
        for axis in sheet.axes:
            for value in axis.values:
                cell = next(
                    c
                    for c in cells
                    if c["seed"] == seed and c["axis"] == axis.name and c["value"] == str(value)
                )
                row.append(f"{_f(cell['homogenization'])} ({cell['accuracy']:.3f})")
        row += [_delta(summary["axes"][a.name]["per_row"][str(seed)]) for a in sheet.axes]
        lines.append("| " + " | ".join(row) + " |")
    bottom = ["Δmax over seeds"] + [
        _delta(summary["axes"][a.name]["per_column"][str(v)]) for a in sheet.axes for v in a.values
    ]
    lines.append("| " + " | ".join(bottom + [""] * len(sheet.axes)) + " |")
    selection = summary["selection"]
    lines += [
        "",
        f"**Δmax^all = {_delta(summary['delta_max_all'])}** (largest minus smallest H of the sheet).",
        "",
        f"Selection on {selection['select_on']}: {selection['cells']} cells within "
        f"{selection['select_within']:g} of the best ({selection['best']:.3f}); among them H still "
        f"spreads by {_delta(selection)}.",
        "",
        '"within noise": the 95% intervals of the highest and the lowest H overlap; "noise undetermined": '
        "one of them has no two-sided interval (fewer than 3 people would be failed by everyone by chance), "
        "so the spread may be noise alone. Overlap is a weak guide: extremes picked out of many cells are "
        "further apart than two given cells.",
    ]
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, cells: list[Cell]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["seed", "axis", "value", "homogenization", "ci95_low", "ci95_high", "accuracy", "metric"]
        )
        for c in cells:
            writer.writerow(
                [c.seed, c.axis, c.value, c.homogenization, *(c.ci95 or (None, None)), c.accuracy, c.metric]
            )
