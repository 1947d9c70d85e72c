"""The typed result (`RoundResult` in the proto) and the result JSON agree, field by field.

Each case runs a real round in process (the coordinator's RoundBook behind its servicers, real
daemons, real blinding and tags; tests/support/harness.py) and reads the auditor's one
GetRoundResult answer. The test rebuilds the JSON from the typed fields with its own mapping
(not the code's) and compares every key the JSON carries; a JSON key the mapping does not know
fails the test, so a figure added to the JSON cannot be left out of the proto unnoticed.
Phases travel as the RoundPhase enum, checked here too. About 4 s in all.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from support.harness import Harness

from monoculture.analysis.release import ReleasePolicy, release
from monoculture.analysis.table import PatternTable
from monoculture.core.errors import ProtocolError
from monoculture.core.messages import Status, phase_message, phase_of, result_message
from monoculture.core.protocol import RoundPhase
from monoculture.v1 import monoculture_pb2 as pb

COMPANIES = ("alpha", "beta", "gamma")
MISSING = object()


def _population(seed: int, people: int = 120) -> dict[str, list[tuple[str, int]]]:
    rng = random.Random(seed)
    return {
        name: [(f"p{i}", int(rng.random() < 0.35)) for i in range(people) if rng.random() < 0.9]
        for name in COMPANIES
    }


def _opt(message: Any, field: str) -> Any:
    return getattr(message, field) if message.HasField(field) else None


def _interval(message: Any, field: str) -> list[float] | None:
    return [getattr(message, field).low, getattr(message, field).high] if message.HasField(field) else None


def _test(message: Any, field: str) -> dict[str, Any] | None:
    if not message.HasField(field):
        return None
    test = getattr(message, field)
    out: dict[str, Any] = {"method": test.method} if test.method else {}
    out.update(p_value_greater=test.p_value_greater, p_value_less=test.p_value_less)
    out["p_value_floor"] = test.p_value_floor
    for name in ("exact", "p_value_greater_holm", "p_value_less_holm"):
        if test.HasField(name):
            out[name] = getattr(test, name)
    return out


def _by_company(figures: Any) -> dict[str, Any]:
    return {
        "failures": {c.company: _opt(c, "failures") for c in figures},
        "failure_rates": {c.company: _opt(c, "failure_rate") for c in figures},
        "failure_rate_ci95": {c.company: _interval(c, "failure_rate_ci95") for c in figures},
    }


def _patterns(cells: Any) -> dict[str, int | None]:
    for cell in cells:
        assert cell.suppressed == (not cell.HasField("count")), cell.pattern
    return {cell.pattern: _opt(cell, "count") for cell in cells}


def _pairs(pairs: Any) -> dict[str, Any]:
    def key(pair: pb.PairFigures) -> str:
        return f"{pair.company_a},{pair.company_b}"

    return {
        "pairwise_homogenization": {key(p): _opt(p, "homogenization") for p in pairs},
        "pairwise_homogenization_ci95": {key(p): _interval(p, "homogenization_ci95") for p in pairs},
        "pairwise_homogenization_upper95": {key(p): _opt(p, "homogenization_upper95") for p in pairs},
        "pairwise_homogenization_test": {key(p): _test(p, "homogenization_test") for p in pairs},
    }


def _group(group: pb.GroupFigures) -> dict[str, Any]:
    if group.withheld:
        return {"suppressed": True, "suppression_reason": group.withheld_reason}
    figures = _by_company(group.company_figures)
    return {
        "suppressed": False, "shared_individuals": _opt(group, "shared_individuals"),
        "failures": figures["failures"], "failure_rates": figures["failure_rates"],
        "systemic_failures": _opt(group, "systemic_failures"),
        "systemic_failure_rate": _opt(group, "systemic_failure_rate"),
        "homogenization": _opt(group, "homogenization"), "homogenization_note": group.homogenization_note,
        "pattern_counts": _patterns(group.patterns), "suppressed_cells": list(group.suppressed_cells),
        "suppressed_failures": list(group.suppressed_failures),
    }  # fmt: skip


def _release_policy(policy: pb.ResultReleasePolicy) -> dict[str, Any]:
    dp = None
    if policy.HasField("differential_privacy"):
        d = policy.differential_privacy
        dp = {
            "mechanism": d.mechanism, "epsilon": d.epsilon, "delta": d.delta,
            "neighbouring": d.neighbouring, "scale": d.scale, "noise": d.noise,
        }  # fmt: skip
    return {
        "min_shared_individuals": policy.min_shared_individuals,
        "min_cell_count": policy.min_cell_count,
        "differential_privacy": dp,
    }


def _round(made: pb.RoundProvenance) -> dict[str, Any]:
    tags = {pb.TAG_MODE_MASKED: "masked", pb.TAG_MODE_RERANDOMISED: "re-randomised"}[made.failure_tags]
    dummies = None
    if made.HasField("dummies"):
        dummies = {
            "epsilon": made.dummies.epsilon, "delta": made.dummies.delta,
            "padded_regions": made.dummies.padded_regions,
        }  # fmt: skip
    return {
        "protocol_version": made.protocol_version, "failure_tags": tags, "dummies": dummies,
        "min_list_size": made.min_list_size,
    }  # fmt: skip


def json_from_typed(m: pb.RoundResult) -> dict[str, Any]:
    """The result JSON as the typed fields say it is (this test's own mapping)."""
    view: dict[str, Any] = {
        "schema_version": m.schema_version, "companies": list(m.companies), "round_id": m.round_id,
        "suppressed": m.withheld, "suppression_reason": m.withheld_reason, "noisy": m.noisy,
        **_by_company(m.company_figures), **_pairs(m.pairs),
        "systemic_failure_rate_ci95": _interval(m, "systemic_failure_rate_ci95"),
        "homogenization_ci95": _interval(m, "homogenization_ci95"),
        "homogenization_test": _test(m, "homogenization_test"),
        "pattern_counts": _patterns(m.patterns),
        "inference_methods": dict(m.inference_methods), "list_sizes": dict(m.list_sizes),
        "release_policy": _release_policy(m.release_policy) if m.HasField("release_policy") else None,
        "round": _round(m.round) if m.HasField("round") else None,
        "groups": {g.label: _group(g) for g in m.groups},
    }  # fmt: skip
    for name in (
        "shared_individuals", "systemic_failures", "systemic_failure_rate", "expected_systemic_failure_rate",
        "homogenization", "homogenization_upper95", "undecodable_sums", "noise_margin",
    ):  # fmt: skip
        view[name] = _opt(m, name)
    for name in (
        "homogenization_ci_method", "homogenization_note", "suppression_note", "undecodable_sums_note",
        "inference_note", "noise_note", "histogram_note", "pairwise_note", "group_suppression_note",
        "failure_count_histogram", "expected_failure_count_histogram", "suppressed_cells",
        "suppressed_failures",
    ):  # fmt: skip
        value = getattr(m, name)
        view[name] = value if isinstance(value, str) else list(value)
    if m.HasField("group_homogenization"):
        g = m.group_homogenization
        view["group_homogenization"] = {
            "avg": _opt(g, "avg"), "unif": _opt(g, "unif"), "worst": _opt(g, "worst"),
            "worst_group": g.worst_group, "groups_used": list(g.groups_used), "notes": list(g.notes),
        }  # fmt: skip
    if m.HasField("privacy_budget"):
        b = m.privacy_budget
        view["privacy_budget"] = {
            "roster": list(b.roster), "spent_epsilon": b.spent_epsilon, "spent_delta": b.spent_delta,
            "cap": _opt(b, "cap"),
        }  # fmt: skip
    return view


def _empty(value: Any) -> Any:
    """What the typed form cannot tell from the JSON's null: "", [], {} and a map of nulls."""
    if isinstance(value, dict) and all(_empty(v) is None for v in value.values()):
        return None
    if value in ("", [], {}):
        return None
    return value


def assert_agree(typed: Any, published: Any, where: str = "result") -> None:
    """Every key of the JSON has the value the typed fields give it, recursively."""
    assert typed is not MISSING, f"{where}: the JSON has it, the typed result has no field for it"
    if isinstance(published, dict) and isinstance(typed, dict) and _empty(published) is not None:
        for key, value in published.items():
            assert_agree(typed.get(key, MISSING), value, f"{where}.{key}")
        # a flag the JSON leaves out (noisy on a withheld result) is false
        extra = {k: v for k, v in typed.items() if k not in published and _empty(v) not in (None, False)}
        assert not extra, f"{where}: typed fields the JSON lacks: {extra}"
        return
    assert _empty(typed) == _empty(published), f"{where}: typed {typed!r} != JSON {published!r}"


CASES = {
    # exact, with small cells withheld (suppressed cells, withheld S and H)
    "exact-suppressed": ({"release_policy": ReleasePolicy(min_shared_individuals=10, min_cell_count=5)}, {}),
    # differential privacy: noisy counts, noisy undecodable sums, no list sizes
    "dp": (
        {
            "release_policy": ReleasePolicy(
                min_shared_individuals=10, mechanism="discrete-laplace", epsilon=1.0, delta=0.0
            )
        },
        {},
    ),
    # group-level figures
    "groups": (
        {"group_labels": {"alpha": {f"p{i}": "x" if i % 2 else "y" for i in range(120)}}},
        {"groups_from": "alpha", "group_labels": ["x", "y"]},
    ),
    # withheld whole: only the roster, the reason and how it was made
    "withheld": ({"release_policy": ReleasePolicy(min_shared_individuals=10_000)}, {}),
    # re-randomised tags and DP dummies: how the round was made
    "rerandomised-dummies": ({"dummies": (1.0, 1e-6)}, {"rerandomise": True}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_typed_result_agrees_with_the_json_field_by_field(tmp_path: Path, case: str) -> None:
    harness_options, open_options = CASES[case]
    harness = Harness(tmp_path, _population(len(case)), **harness_options)  # type: ignore[arg-type]
    round_id = harness.open_round(**open_options)  # type: ignore[arg-type]
    assert harness.run(round_id) == RoundPhase.COMPLETE
    reply = harness.result_reply(round_id)
    published = json.loads(reply.result_json)
    typed = reply.result
    assert (reply.phase, reply.phase_name, reply.round_id) == (pb.ROUND_PHASE_COMPLETE, "COMPLETE", round_id)
    assert_agree(json_from_typed(typed), published)
    assert typed.company_count == len(typed.companies) == 3
    assert typed.round.protocol_version == 3
    if case == "rerandomised-dummies":
        assert typed.round.failure_tags == pb.TAG_MODE_RERANDOMISED and typed.round.dummies.epsilon == 1.0
    else:
        assert typed.round.failure_tags == pb.TAG_MODE_MASKED and not typed.round.HasField("dummies")
    if case == "withheld":
        assert typed.withheld and not typed.HasField("shared_individuals") and not typed.patterns
    else:
        assert typed.shared_individuals == published["shared_individuals"] > 0
        assert len(typed.patterns) == 8
    history = harness.auditor_servicer.ListRounds(pb.PrivacyBudgetRequest(), None)
    assert [entry.result for entry in history.rounds] == [typed]  # the history carries it too
    harness.close()


def test_the_check_itself_finds_a_disagreement() -> None:
    """The comparison fails on a changed figure and on a JSON key without a typed field."""
    published = release(PatternTable(COMPANIES, (40, 12, 9, 6, 11, 5, 7, 10)), ReleasePolicy())
    typed = json_from_typed(result_message(published))
    assert_agree(typed, published)
    changed = {**published, "shared_individuals": published["shared_individuals"] + 1}
    with pytest.raises(AssertionError, match="shared_individuals"):
        assert_agree(typed, changed)
    with pytest.raises(AssertionError, match="no field"):
        assert_agree(typed, {**published, "a_new_figure": 1.0})
    assert result_message({**published, "a_new_figure": 1.0}) == result_message(published)


def test_phases_travel_as_the_enum_named_in_the_protocol(tmp_path: Path) -> None:
    assert [pb.RoundPhase.Name(phase_message(p)) for p in RoundPhase] == [
        f"ROUND_PHASE_{p.value}" for p in RoundPhase
    ]
    assert set(pb.RoundPhase.keys()) == {f"ROUND_PHASE_{p.value}" for p in RoundPhase} | {
        "ROUND_PHASE_UNSPECIFIED"
    }
    assert all(phase_of(phase_message(p)) is p for p in RoundPhase)
    with pytest.raises(ProtocolError, match="no known round phase"):
        phase_of(pb.ROUND_PHASE_UNSPECIFIED)
    harness = Harness(tmp_path, _population(1, people=20))
    round_id = harness.open_round()
    raw = harness.auditor_servicer.GetRoundStatus(pb.RoundRef(round_id=round_id), None)
    assert (raw.phase, raw.phase_name) == (pb.ROUND_PHASE_OPEN, "OPEN")  # the old string still filled
    assert Status.of(raw).phase is RoundPhase.OPEN
    harness.close()
