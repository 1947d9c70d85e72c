"""The result's figures as matplotlib plots: the HTML report embeds them, `Result.plot_*` returns
them. Each reads the result JSON only (no figure is recomputed here) and draws on a given Axes,
or on a new Figure that belongs to no pyplot state (so nothing leaks between calls or threads).
Withheld counts (null) are drawn as missing, never as 0.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np


def _axes(ax: Any, width: float = 6.0, height: float = 3.5) -> Any:
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained").add_subplot()


def failure_rates(result: dict[str, Any], ax: Any = None) -> Any:
    """Each company's failure rate with its 95% interval; S and its expectation under
    independence as lines."""
    ax = _axes(ax)
    companies = result["companies"]
    rates = [result["failure_rates"].get(c) for c in companies]
    intervals = result.get("failure_rate_ci95") or {}
    x = np.arange(len(companies))
    heights = [np.nan if r is None else r for r in rates]
    lower, upper = [], []
    for name, rate in zip(companies, heights, strict=True):
        ci = intervals.get(name)
        lower.append(0.0 if ci is None or np.isnan(rate) else max(0.0, rate - ci[0]))
        upper.append(0.0 if ci is None or np.isnan(rate) else max(0.0, ci[1] - rate))
    ax.bar(x, heights, yerr=[lower, upper], capsize=4, color="#4c72b0", label="failure rate (95% CI)")
    s, expected = result.get("systemic_failure_rate"), result.get("expected_systemic_failure_rate")
    if s is not None:
        ax.axhline(s, color="#c44e52", linestyle="-", label=f"S, failed by all = {s:.3g}")
    if expected is not None:
        ax.axhline(expected, color="#c44e52", linestyle=":", label=f"S if independent = {expected:.3g}")
    ax.set_xticks(x, companies, rotation=30 if len(companies) > 4 else 0)
    ax.set_ylabel("share of shared individuals")
    ax.set_title("Failure rates")
    ax.legend(fontsize="small")
    return ax


def failure_histogram(result: dict[str, Any], ax: Any = None) -> Any:
    """How many companies failed each shared individual, against the independence baseline
    (the Poisson-binomial distribution of the companies' own rates)."""
    ax = _axes(ax)
    observed = result.get("failure_count_histogram")
    expected = result.get("expected_failure_count_histogram")
    k = len(result["companies"])
    x = np.arange(k + 1)
    if observed is not None:
        ax.bar(x - 0.2, [np.nan if v is None else v for v in observed], width=0.4, label="observed",
               color="#4c72b0")  # fmt: skip
    if expected is not None:
        ax.bar(x + 0.2, expected, width=0.4, label="if independent", color="#dd8452")
    ax.set_xticks(x)
    ax.set_xlabel("companies that failed the individual")
    ax.set_ylabel("individuals")
    ax.set_title("Failures per individual")
    ax.legend(fontsize="small")
    return ax


def pairwise_heatmap(result: dict[str, Any], ax: Any = None) -> Any:
    """Pairwise H (f_ij / f_i f_j) as a companies x companies heatmap; 1 is independence."""
    companies = result["companies"]
    ax = _axes(ax, 4.5 + 0.3 * len(companies), 3.5 + 0.3 * len(companies))
    grid = np.full((len(companies), len(companies)), np.nan)
    for key, value in (result.get("pairwise_homogenization") or {}).items():
        a, b = (companies.index(name) for name in key.split(","))
        if value is not None:
            grid[a, b] = grid[b, a] = value
    finite = grid[np.isfinite(grid)]
    spread = max(1.0, float(np.max(np.abs(np.log(finite))))) if finite.size and (finite > 0).all() else 1.0
    from matplotlib.colors import LogNorm

    image = ax.imshow(grid, cmap="RdBu_r", norm=LogNorm(vmin=np.exp(-spread), vmax=np.exp(spread)))
    for a in range(len(companies)):
        for b in range(len(companies)):
            if np.isfinite(grid[a, b]):
                strong = grid[a, b] > 0 and abs(np.log(grid[a, b])) > 0.6 * spread
                ax.text(b, a, f"{grid[a, b]:.2f}", ha="center", va="center", fontsize="small",
                        color="white" if strong else "black")  # fmt: skip
    ax.set_xticks(range(len(companies)), companies, rotation=45, ha="right")
    ax.set_yticks(range(len(companies)), companies)
    ax.set_title("Pairwise homogenization (1 = independent)")
    ax.figure.colorbar(image, ax=ax, shrink=0.8)
    return ax


def upset(result: dict[str, Any]) -> Any:
    """The 2^k pattern table as an UpSet plot (UpSetPlot): one bar per pattern with at least one
    failure, the companies that failed it marked below. Withheld cells are left out (noted in
    the title)."""
    import pandas as pd
    from matplotlib.figure import Figure
    from upsetplot import UpSet

    companies = result["companies"]
    counts = result.get("pattern_counts") or {}
    kept = {p: c for p, c in counts.items() if c is not None and "1" in p}
    withheld = sum(1 for c in counts.values() if c is None)
    index = pd.MultiIndex.from_tuples(
        [tuple(bit == "1" for bit in pattern) for pattern in kept], names=companies
    )
    series = pd.Series([max(0, int(c)) for c in kept.values()], index=index, dtype="int64")
    figure = Figure(figsize=(max(6.0, 0.5 * len(kept) + 3), 4.5))
    if len(series):
        # UpSetPlot 0.9 warns about pandas' chained assignment (its own code), and its count labels
        # fail under numpy 2.4: the counts are in the report's table beside the plot.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)
            UpSet(series, sort_by="cardinality", show_counts=False).plot(fig=figure)
    title = "Failure patterns (who failed the same individuals)"
    if withheld:
        title += f"; {withheld} withheld cells left out"
    figure.suptitle(title)
    return figure
