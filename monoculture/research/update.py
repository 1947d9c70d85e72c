"""`monoculture experiment update UPDATE.toml --out DIR`: self-defeating improvements, played.

Two kinds of update, measured before and after on the same people, and compared as
`round compare` compares two rounds (analysis.compare.compare_results):

- `upstream` ("Fixes That Fail", Wu et al. 2021, Definition 2.1): the companies' heads sit on a
  shared featurizer, the hidden layer of a network the upstream trains on its own objective (a
  coarse task: the label modulo `coarse_classes`). The update trains that network longer: its own
  test loss falls (an improvement, recorded), the companies retrain their heads on the new
  features, and a company's failure rate can rise.
- `move-to-shared-data`: every company but one trains on one shared sample; the one trains on a
  smaller sample of its own (`own_share` of the others'). The update moves it onto the shared
  sample: its error falls while the ecosystem's S and H rise (the ecosystem kind).

Every seed's split, model and bootstrap is fixed by the seed: a run is repeatable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from monoculture.analysis.compare import compare_results, paired_difference
from monoculture.core.config import read_toml
from monoculture.core.errors import ConfigError
from monoculture.research.experiment import (
    Experiment,
    Progress,
    _get,
    _quiet,
    failure_patterns,
    load_dataset,
    load_experiment,
    split,
)

KINDS = ("upstream", "move-to-shared-data")


@dataclass(frozen=True)
class Update:
    experiment: Experiment
    kind: str
    company: str = ""  # move-to-shared-data: who moves
    coarse_classes: int = 2  # upstream: its own task is the label modulo this
    hidden: tuple[int, ...] = (16,)  # the upstream network before the update
    before_epochs: int = 5
    after_epochs: int = 300
    after_hidden: tuple[int, ...] = ()  # after the update (empty: the same as before)
    own_share: float = 0.25  # move-to-shared-data: the mover's own sample, as a share of train_size


def load_update(path: Path) -> Update:
    experiment = load_experiment(path)
    table = read_toml(path).get("update", {})
    where = f"{path}: [update]"
    kind = _get(table, "kind", str, where)
    if kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r}", where=where, hint=f"one of {', '.join(KINDS)}")
    company = _get(table, "company", str, where, experiment.companies[0].name)
    if company not in {c.name for c in experiment.companies}:
        raise ConfigError(f"company {company!r} is not one of the [[company]] tables", where=where)
    return Update(
        experiment, kind, company, _get(table, "coarse_classes", int, where, 2),
        tuple(_get(table, "hidden", list, where, [16])), _get(table, "before_epochs", int, where, 5),
        _get(table, "after_epochs", int, where, 300), tuple(_get(table, "after_hidden", list, where, [])),
        _get(table, "own_share", float, where, 0.25),
    )  # fmt: skip


def _hidden(network: Any, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The first hidden layer's activations of a fitted MLP: the shared featurizer."""
    activations: npt.NDArray[np.float64] = np.maximum(0.0, x @ network.coefs_[0] + network.intercepts_[0])
    return activations


def _upstream(update: Update, x: Any, y: Any, parts: Any, seed: int, stage: str) -> tuple[Any, float]:
    from sklearn.metrics import log_loss
    from sklearn.neural_network import MLPClassifier

    coarse = y % update.coarse_classes
    epochs = update.before_epochs if stage == "before" else update.after_epochs
    hidden = update.after_hidden if stage == "after" and update.after_hidden else update.hidden
    network = MLPClassifier(hidden_layer_sizes=hidden, max_iter=epochs, random_state=seed)
    _quiet(network.fit, x[parts.pretrain], coarse[parts.pretrain])
    loss = float(log_loss(coarse[parts.test], network.predict_proba(x[parts.test]), labels=network.classes_))
    return network, loss


def _predictions(
    update: Update, stage: str, x: Any, y: Any, parts: Any, seed: int
) -> tuple[dict[str, Any], float | None]:
    experiment = update.experiment
    out: dict[str, Any] = {}
    loss = None
    if update.kind == "upstream":
        network, loss = _upstream(update, x, y, parts, seed, stage)
    for n, company in enumerate(experiment.companies):
        model = company.model.build(seed * 1000 + n)
        if update.kind == "upstream":
            mine = parts.samples[company.name]
            _quiet(model.fit, _hidden(network, x[mine]), y[mine])
            out[company.name] = model.predict(_hidden(network, x[parts.test]))
        else:
            moved = stage == "after" or company.name != update.company
            own = parts.samples[update.company]
            mine = parts.shared if moved else own[: max(2, round(update.own_share * len(own)))]
            _quiet(model.fit, x[mine], y[mine])
            out[company.name] = model.predict(x[parts.test])
    return out, loss


def run_update(update: Update, out: Path, progress: Progress = print) -> dict[str, Any]:
    from monoculture.research.api import measure

    experiment = update.experiment
    x, y = load_dataset(experiment)
    names = [c.name for c in experiment.companies]
    out.mkdir(parents=True, exist_ok=True)
    seeds: list[dict[str, Any]] = []
    pairs = []
    for seed in experiment.seeds:
        parts = split(experiment, len(y), seed)
        if update.kind == "move-to-shared-data":
            # the shared sample is one no company holds on its own: the last company's sample
            parts = replace(parts, shared=parts.samples[names[-1]])
        truth = y[parts.test]
        ids = [f"x{int(i)}" for i in parts.test]
        shared = parts.shared_population()
        stages: dict[str, Any] = {}
        patterns = {}
        for stage in ("before", "after"):
            predicted, loss = _predictions(update, stage, x, y, parts, seed)
            files = {}
            for name in names:
                failed = (predicted[name] != truth).astype(int)
                held = parts.holds[name]
                files[name] = ([ids[i] for i in held], failed[held])
            result = measure(files, private=experiment.private).raw
            (out / f"{stage}-seed-{seed}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
            accuracy = {n: float((predicted[n] == truth).mean()) for n in names}
            stages[stage] = {"result": result, "upstream_loss": loss, "accuracy": accuracy}
            patterns[stage] = failure_patterns(predicted, truth, names, shared)
        improved = (
            update.kind == "upstream"
            and stages["after"]["upstream_loss"] <= stages["before"]["upstream_loss"]
        )
        comparison = compare_results(stages["before"]["result"], stages["after"]["result"], improved)
        pairs.append((patterns["before"], patterns["after"]))
        progress(
            f"seed {seed}: H {_f(stages['before']['result']['homogenization'])} -> "
            f"{_f(stages['after']['result']['homogenization'])}; flagged: "
            + (", ".join(f["kind"] for f in comparison["self_defeating"]) or "nothing")
        )
        seeds.append({
            "seed": seed, "upstream_loss": [stages[s]["upstream_loss"] for s in ("before", "after")],
            "accuracy": {s: stages[s]["accuracy"] for s in ("before", "after")},
            "comparison": comparison,
        })  # fmt: skip
    rng = np.random.default_rng(list(experiment.seeds))
    summary = {
        "kind": update.kind, "dataset": experiment.source, "companies": names,
        "moving_company": update.company if update.kind == "move-to-shared-data" else None,
        "seeds": seeds,
        "pooled_h_change": paired_difference(pairs, len(names), rng=rng).to_dict(),
        "flagged_seeds": sum(1 for s in seeds if s["comparison"]["self_defeating"]),
    }  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out / "summary.md").write_text(update_markdown(summary), encoding="utf-8")
    return summary


def _f(value: Any) -> str:
    return "undefined" if value is None else f"{value:.4g}"


def update_markdown(summary: dict[str, Any]) -> str:
    lines = [f"# Update experiment ({summary['kind']}) on {summary['dataset']}", ""]
    for seed in summary["seeds"]:
        c = seed["comparison"]
        lines.append(f"## Seed {seed['seed']}")
        if summary["kind"] == "upstream":
            before, after = seed["upstream_loss"]
            lines.append(f"Upstream's own test loss: {before:.4f} -> {after:.4f}.")
        lines += [
            "",
            "| figure | before | after | change | 95% CI | significant |",
            "|---|---|---|---|---|---|",
        ]
        changes = [(f"fail of {n}", c["failure_rates"][n]) for n in c["companies"]]
        changes += [("S", c["systemic_failure_rate"]), ("H", c["homogenization"])]
        for label, ch in changes:
            ci = ch["ci95"]
            interval = "—" if not ci else f"{ci[0]:+.4g} to {ci[1]:+.4g}"
            lines.append(f"| {label} | {_f(ch['old'])} | {_f(ch['new'])} | {_f(ch['change'])} | {interval} | "
                         f"{ch['significant'] or ''} |")  # fmt: skip
        flags = c["self_defeating"]
        lines += (
            [""]
            + ([f"**Self-defeating ({f['kind']})**: {f['reason']}." for f in flags] or ["No flag."])
            + [""]
        )
    pooled = summary["pooled_h_change"]
    lines.append(
        f"Pooled over the seeds (two-level bootstrap: seeds, then the same shared individuals): H changes by "
        f"{_f(pooled['difference'])} (95% CI {_f(pooled['ci95'][0])} to {_f(pooled['ci95'][1])}). "
        f"Flagged in {summary['flagged_seeds']} of {len(summary['seeds'])} seeds."
    )
    return "\n".join(lines) + "\n"
