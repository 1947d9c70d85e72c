"""Readable summaries of a result JSON."""

from __future__ import annotations

from typing import Any


def _fmt(value: float | None, digits: int = 4) -> str:
    return "undefined" if value is None else f"{value:.{digits}f}"


def _p_value(test: dict[str, Any] | None) -> str:
    if test is None:
        return "exact test of H = 1: not defined here"
    p = test["p_value_greater"]
    shown = f"< {test['p_value_floor']:.0e}" if p <= test["p_value_floor"] else f"= {p:.3g}"
    return f"exact test of H = 1 vs H > 1: p {shown}"


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
        lines.append(
            f"  {name:<{width}} {result['failures'][name]:>9} {_fmt(result['failure_rates'][name]):>8}"
        )
    lines.append(
        f"systemic failures: {_count(result['systemic_failures'])} "
        f"(S = {_fmt(result['systemic_failure_rate'])}; "
        f"{_fmt(result['expected_systemic_failure_rate'], 6)} expected under independence)"
    )
    h = result["homogenization"]
    if h is None:
        lines.append(f"homogenization H: {result.get('homogenization_note', 'undefined')}")
    else:
        ci = result.get("homogenization_ci95")
        ci_text = f"95% CI {ci[0]:.4f} to {ci[1]:.4f}; " if ci else ""
        lines.append(f"homogenization H = {h:.4f} ({ci_text}{_p_value(result.get('homogenization_test'))})")
    lines.append(f"failure patterns (character i = company i failed; order {', '.join(companies)}):")
    for pattern, count in result["pattern_counts"].items():
        lines.append(f"  {pattern}  {_count(count)}")
    if result.get("suppressed_cells"):
        lines.append(f"note: {result['suppression_note']}")
    if result.get("noisy"):
        dp = result["release_policy"]["differential_privacy"]
        lines.append(f"note: counts carry {dp['mechanism']} noise (epsilon {dp['epsilon']} for this round)")
    return "\n".join(lines)


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
