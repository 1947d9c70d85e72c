"""What a report says, independent of its format: headings, paragraphs, tables and figures,
read from one result JSON. `html` and `markdown` render the same blocks, so the two never say
different things. The words for an auditor (how to read the interval, the test, a one-sided bound,
what the release withheld and why) are written here once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Figure:
    """A plot: `draw` returns a matplotlib Figure (or Axes); `alt` describes it in words."""

    draw: Callable[[], Any]
    alt: str


Block = str | Table | Figure


@dataclass
class Section:
    heading: str
    blocks: list[Block] = field(default_factory=list)


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "withheld" if digits >= 0 else "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _ci(ci: Any) -> str:
    return "—" if not ci else f"{ci[0]:.4g} to {ci[1]:.4g}"


def title(result: dict[str, Any]) -> str:
    round_id = result.get("round_id")
    return f"Homogenization report{f' — round {round_id}' if round_id else ''}"


def comparison_section(comparison: dict[str, Any]) -> Section:
    """The change from an earlier result (analysis.compare.compare_results)."""
    rows = []
    changes = [(f"failure rate of {c}", comparison["failure_rates"][c]) for c in comparison["companies"]]
    changes += [("S", comparison["systemic_failure_rate"]), ("H", comparison["homogenization"])]
    for label, change in changes:
        ci = change["ci95"]
        rows.append([
            label, _num(change["old"]), _num(change["new"]), _num(change["change"]),
            "—" if not ci else f"{ci[0]:+.4g} to {ci[1]:+.4g}", change["significant"] or "",
        ])  # fmt: skip
    blocks: list[Block] = [
        f"From round {comparison['old_round'] or '(earlier)'} to this one.",
        Table(["figure", "before", "now", "change", "95% CI", "significant"], rows),
    ]
    flags = comparison["self_defeating"]
    blocks += [f"Self-defeating improvement ({f['kind']}): {f['reason']}." for f in flags]
    if not flags:
        blocks.append("No self-defeating improvement is flagged.")
    blocks.append(f"Method: {comparison['method']}.")
    return Section("Compared with an earlier round", blocks)


def sections(result: dict[str, Any], comparison: dict[str, Any] | None = None) -> list[Section]:
    """The report of `result`, in order (with `comparison`, the change from an earlier one)."""
    if result.get("suppressed"):
        return [
            Section(
                "Result withheld",
                [
                    f"Companies: {', '.join(result['companies'])}.",
                    f"The release policy withheld the result: {result.get('suppression_reason', '')}.",
                ],
            ),
            _policy(result),
        ]
    out = [_summary(result), _companies(result), _patterns(result)]
    if comparison is not None:
        out.insert(1, comparison_section(comparison))
    if result.get("groups"):
        out.append(_groups(result))
    out += [_reading(result), _policy(result)]
    return out


def _summary(result: dict[str, Any]) -> Section:
    h, ci, upper = (
        result.get("homogenization"),
        result.get("homogenization_ci95"),
        result.get("homogenization_upper95"),
    )
    lines: list[Block] = [
        f"Companies: {', '.join(result['companies'])}. Shared individuals (held by every company): "
        f"N = {_num(result['shared_individuals'])}.",
        f"Systemic failure rate (failed by every company): S = {_num(result.get('systemic_failure_rate'))}; "
        "expected if the companies failed independently: "
        f"{_num(result.get('expected_systemic_failure_rate'))}.",
    ]
    if h is None:
        lines.append(f"Homogenization H is undefined: {result.get('homogenization_note', 'see the notes')}.")
    else:
        bound = f"; one-sided 95% upper bound {upper:.4g}" if ci is None and upper is not None else ""
        lines.append(f"Homogenization H = S / prod fail_i = {h:.4g} (95% CI {_ci(ci)}{bound}).")
    test = result.get("homogenization_test")
    if test:
        lines.append(f"Test of H = 1 (independence) against H > 1: p = {_num(test.get('p_value_greater'))}.")
    if result.get("inference_note"):
        lines.append(f"Note: {result['inference_note']}")
    return Section("Summary", lines)


def _companies(result: dict[str, Any]) -> Section:
    from monoculture.report import plots

    intervals = result.get("failure_rate_ci95") or {}
    rows = [
        [
            name,
            _num(result["failures"].get(name)),
            _num(result["failure_rates"].get(name)),
            _ci(intervals.get(name)),
        ]
        for name in result["companies"]
    ]
    blocks: list[Block] = [
        Table(["company", "failures", "failure rate", "95% CI"], rows),
        Figure(
            lambda: plots.failure_rates(result).figure,
            "bar chart of each company's failure rate with its interval",
        ),
        Figure(
            lambda: plots.failure_histogram(result).figure,
            "histogram of how many companies failed each individual, beside the independence baseline",
        ),
    ]
    if len(result["companies"]) > 1 and result.get("pairwise_homogenization"):
        blocks.append(Figure(lambda: plots.pairwise_heatmap(result).figure, "heatmap of pairwise H"))
    return Section("Companies", blocks)


def _patterns(result: dict[str, Any]) -> Section:
    from monoculture.report import plots

    companies = result["companies"]
    rows = [
        [", ".join(c for c, bit in zip(companies, pattern, strict=True) if bit == "1") or "(none)", pattern,
         _num(count)]
        for pattern, count in result["pattern_counts"].items()
    ]  # fmt: skip
    return Section("Failure patterns", [
        f"Each row: the individuals failed by exactly these companies (pattern: character i is "
        f"company i, in the order {', '.join(companies)}).",
        Table(["failed by", "pattern", "individuals"], rows),
        Figure(lambda: plots.upset(result), "UpSet plot of the failure patterns"),
    ])  # fmt: skip


def _groups(result: dict[str, Any]) -> Section:
    rows = []
    for label, group in result["groups"].items():
        if group.get("suppressed"):
            rows.append([label, "withheld", "", "", group.get("suppression_reason", "")])
            continue
        rows.append([
            label, _num(group.get("shared_individuals")), _num(group.get("systemic_failure_rate")),
            _num(group.get("homogenization")), group.get("homogenization_note", ""),
        ])  # fmt: skip
    metrics = result.get("group_homogenization") or {}
    blocks: list[Block] = [
        Table(["group", "N", "S", "H", "note"], rows),
        f"Group homogenization (Bommasani et al.): avg = {_num(metrics.get('avg'))}, unif = "
        f"{_num(metrics.get('unif'))}, worst = {_num(metrics.get('worst'))}"
        + (f" (group {metrics['worst_group']})" if metrics.get("worst_group") else "")
        + ".",
    ]
    blocks += [f"Note: {note}" for note in metrics.get("notes", [])]
    return Section("Groups", blocks)


def _reading(result: dict[str, Any]) -> Section:
    method = result.get("homogenization_ci_method") or "see inference_methods"
    blocks: list[Block] = [
        "The interval. A 95% confidence interval is a range built so that, were the measurement "
        "repeated on new samples of the same population, 95 of 100 such ranges would hold the true "
        f"value. Here it is made by: {method}. An H whose interval lies above 1 means the companies "
        "fail the same people more often than chance would make them.",
        "The test. The p-value is the chance, were the companies failing people independently "
        "(H = 1), of a table at least this homogeneous. A small p-value (say below 0.01) is evidence "
        "of homogenization; a large one is not evidence of independence, only of too little data to "
        "tell.",
        "A one-sided bound. Where fewer than 3 individuals would be failed by every company under "
        "independence, no two-sided interval is honest; the report gives instead a 95% upper bound: "
        "H is at most that value with 95% confidence. The interval for S is then exact and "
        "conservative: it covers at least 95%, often more.",
    ]
    if result.get("noisy"):
        blocks.append(
            "Differential privacy. Every count carries random noise drawn by the release policy; the "
            "figures are estimates from the noisy counts, a noisy count may be negative, and the "
            "intervals and the test include the noise."
        )
    return Section("How to read this report", blocks)


def _policy(result: dict[str, Any]) -> Section:
    policy = result.get("release_policy") or {}
    blocks: list[Block] = []
    dp = policy.get("differential_privacy")
    if dp:
        blocks.append(
            f"Released under differential privacy: {dp['mechanism']}, epsilon {dp['epsilon']}"
            + (f", delta {dp['delta']}" if dp.get("delta") else "")
            + f" ({dp.get('neighbouring', '')})."
        )
    else:
        blocks.append(
            f"Released exactly, with a minimum of {policy.get('min_shared_individuals', 0)} shared "
            f"individuals and small cells (below {policy.get('min_cell_count', 0)}) withheld."
        )
    if result.get("suppressed_cells"):
        blocks.append(
            f"Withheld cells: {', '.join(result['suppressed_cells'])}. "
            f"Why: {result.get('suppression_note', '')}"
        )
    if "undecodable_sums" in result:
        value = result["undecodable_sums"]
        if value is None:
            blocks.append(f"Sums that did not decode: not shown ({result.get('undecodable_sums_note', '')}).")
        else:
            blocks.append(
                f"Sums that did not decode (a failure value tampered with; 0 in an honest round): {value}"
                + (" (noisy)." if result.get("noisy") else ".")
            )
    budget = result.get("privacy_budget")
    if budget:
        blocks.append(
            f"Privacy budget of the roster after this round: epsilon {budget['spent_epsilon']:g} spent"
            + (f" of a cap of {budget['cap']:g}." if budget.get("cap") is not None else " (no cap).")
        )
    return Section("What the release policy did", blocks)
