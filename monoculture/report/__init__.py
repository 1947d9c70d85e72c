"""Readable summaries of a result JSON."""

from __future__ import annotations

from typing import Any


def _fmt(value: float | None, digits: int = 4) -> str:
    return "undefined" if value is None else f"{value:.{digits}f}"


def _p_value(test: dict[str, Any] | None) -> str:
    if test is None:
        return "exact test of independence (H = 1): not defined here"
    p = test["p_value_greater"]
    shown = f"<= {test['p_value_floor']:.0e}" if p <= test["p_value_floor"] else f"= {p:.3g}"
    return f"exact test of independence (H = 1) vs H > 1: p {shown}"


def _interval(ci: list[float] | None) -> str:
    """'95% CI lo to hi; ', an upper bound alone when lo is 0, or nothing."""
    if not ci:
        return ""
    if ci[0] == 0:
        return f"95% upper bound {ci[1]:.4g}; "
    return f"95% CI {ci[0]:.4f} to {ci[1]:.4f}; "


def _count(value: int | None) -> str:
    return "withheld" if value is None else str(value)


def format_summary(result: dict[str, Any]) -> str:
    companies = result["companies"]
    if result.get("suppressed"):
        return (
            f"round {result.get('round_id', '')}: {len(companies)} companies ({', '.join(companies)})\n"
            f"result withheld by the release policy: {result['suppression_reason']}"
        )
    n = result["shared_individuals"]
    width = max(12, *(len(c) for c in companies))
    round_id = result.get("round_id")
    lines = [
        (f"round {round_id}: " if round_id else "") + f"{len(companies)} companies, {n} shared individuals",
        f"  {'company':<{width}} {'failures':>9} {'rate':>8}",
    ]
    for name in companies:
        failures, rate = _count(result["failures"][name]), _fmt(result["failure_rates"][name])
        lines.append(f"  {name:<{width}} {failures:>9} {rate:>8}")
    lines.append(
        f"systemic failures: {_count(result['systemic_failures'])} "
        f"(S = {_fmt(result['systemic_failure_rate'])}; "
        f"{_fmt(result['expected_systemic_failure_rate'], 6)} expected under independence)"
    )
    h = result["homogenization"]
    if h is None:
        lines.append(f"homogenization H: {result.get('homogenization_note', 'undefined')}")
    else:
        ci_text = _interval(result.get("homogenization_ci95"))
        upper = result.get("homogenization_upper95")
        if not ci_text and upper is not None:  # small counts: a one-sided bound stands in
            ci_text = f"one-sided 95% upper bound {upper:.4g}; "
        lines.append(f"homogenization H = {h:.4f} ({ci_text}{_p_value(result.get('homogenization_test'))})")
    if result.get("inference_note"):
        lines.append(f"note: {result['inference_note']}")
    lines.append(f"failure patterns (character i = company i failed; order {', '.join(companies)}):")
    for pattern, count in result["pattern_counts"].items():
        lines.append(f"  {pattern}  {_count(count)}")
    if result.get("suppressed_cells"):
        lines.append(f"note: {result['suppression_note']}")
    if result.get("noisy"):
        dp = result["release_policy"]["differential_privacy"]
        lines.append(f"note: counts carry {dp['mechanism']} noise (epsilon {dp['epsilon']} for this round)")
    if result.get("groups"):
        lines += _group_lines(result)
    return "\n".join(lines)


def _group_lines(result: dict[str, Any]) -> list[str]:
    """Each group's N, S and H, then avg / unif / worst."""
    groups = result["groups"]
    width = max(12, *(len(label) for label in groups))
    lines = [f"groups: {len(groups)}", f"  {'group':<{width}} {'shared':>8} {'systemic':>9} {'H':>9}"]
    for label, group in groups.items():
        if group.get("suppressed"):
            lines.append(f"  {label:<{width}} withheld: {group['suppression_reason']}")
            continue
        lines.append(
            f"  {label:<{width}} {group['shared_individuals']:>8} {_count(group['systemic_failures']):>9} "
            f"{_fmt(group['homogenization']):>9}"
        )
    metrics = result["group_homogenization"]
    worst = f" (group {metrics['worst_group']})" if metrics["worst_group"] is not None else ""
    lines.append(
        f"group homogenization: avg {_fmt(metrics['avg'])}, unif {_fmt(metrics['unif'])}, "
        f"worst {_fmt(metrics['worst'])}{worst}"
    )
    lines += [f"note: {note}" for note in metrics["notes"]]
    return lines


def format_truth_comparison(measured: dict[str, Any], truth: dict[str, Any], model_h: float | None) -> str:
    """Measured result beside the plaintext ground truth of a synthetic population."""
    rows = [
        ("shared individuals", measured["shared_individuals"], truth["shared_individuals"]),
        ("systemic failures", measured["systemic_failures"], truth["systemic_failures"]),
    ]
    rows += [
        (f"failures of {c}", measured["failures"][c], truth["failures"][c]) for c in measured["companies"]
    ]
    lines = [
        "ground truth (plaintext join of the synthetic files) beside the private result:",
        f"  {'':<28} {'private':>12} {'plaintext':>12}",
    ]
    for label, mine, real in rows:
        lines.append(f"  {label:<28} {mine:>12} {real:>12}")
    lines.append(
        f"  {'homogenization H':<28} {_fmt(measured['homogenization']):>12} "
        f"{_fmt(truth['homogenization']):>12}"
    )
    identical = measured["pattern_counts"] == truth["pattern_counts"]
    lines.append(f"  pattern table identical: {'yes' if identical else 'NO'}")
    lines.append(f"  H of the generating model (expected value): {_fmt(model_h)}")
    return "\n".join(lines)


def _change_line(label: str, change: dict[str, Any]) -> str:
    if change["change"] is None:
        return f"  {label:<24} undefined"
    ci = change["ci95"]
    interval = f" (95% CI {ci[0]:+.4g} to {ci[1]:+.4g})" if ci else ""
    mark = {"up": "  significant rise", "down": "  significant fall"}.get(change["significant"] or "", "")
    return (
        f"  {label:<24} {change['old']:.4g} -> {change['new']:.4g}: {change['change']:+.4g}{interval}{mark}"
    )


def format_comparison(comparison: dict[str, Any]) -> str:
    """Two results side by side (analysis.compare.compare_results), with the flags."""
    lines = [f"round {comparison['old_round'] or 'old'} -> round {comparison['new_round'] or 'new'}:"]
    lines += [
        _change_line(f"failure rate of {c}", comparison["failure_rates"][c]) for c in comparison["companies"]
    ]
    lines.append(_change_line("S (failed by all)", comparison["systemic_failure_rate"]))
    lines.append(_change_line("H", comparison["homogenization"]))
    for flag in comparison["self_defeating"]:
        lines.append(f"SELF-DEFEATING ({flag['kind']}): {flag['reason']}")
    if not comparison["self_defeating"]:
        lines.append("no self-defeating improvement flagged")
    lines.append(f"note: {comparison['method']}")
    return "\n".join(lines)
