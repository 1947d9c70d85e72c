"""Protocol values as proto messages: a round's phase as the `RoundPhase` enum, and a released
result as the typed `RoundResult` (docs/PROTOCOL.md, "Typed result").

`result_message` reads the released result, the same dict the result JSON is written from, so
the typed message and the JSON cannot disagree; tests/test_typed_result.py checks them field by
field on real rounds. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from monoculture.core.errors import ProtocolError
from monoculture.core.protocol import RoundPhase
from monoculture.v1 import monoculture_pb2 as pb

_PHASE_PREFIX = "ROUND_PHASE_"


def phase_message(phase: RoundPhase) -> pb.RoundPhase.ValueType:
    """`RoundPhase.OPEN` -> `ROUND_PHASE_OPEN`."""
    return pb.RoundPhase.Value(_PHASE_PREFIX + phase.value)


def phase_of(value: pb.RoundPhase.ValueType) -> RoundPhase:
    """`ROUND_PHASE_OPEN` -> `RoundPhase.OPEN`; refuses ROUND_PHASE_UNSPECIFIED (a peer that
    sent no phase) and values this release does not know."""
    name = pb.RoundPhase.Name(value) if value in pb.RoundPhase.values() else ""
    if not name or value == pb.ROUND_PHASE_UNSPECIFIED:
        raise ProtocolError(
            f"the coordinator sent no known round phase ({value})",
            hint="run the same monoculture release on the coordinator and every party",
        )
    return RoundPhase(name.removeprefix(_PHASE_PREFIX))


@dataclass(frozen=True)
class Status:
    """A round's status as the coordinator reports it (`RoundStatus`), its phase a RoundPhase."""

    round_id: str
    phase: RoundPhase
    companies: tuple[str, ...]
    hops_done: int  # list-hops uploaded so far
    hops_total: int  # k lists x k hops
    failure_reason: str = ""
    failed_party: str = ""

    @classmethod
    def of(cls, message: pb.RoundStatus) -> Status:
        return cls(
            round_id=message.round_id, phase=phase_of(message.phase), companies=tuple(message.companies),
            hops_done=message.hops_done, hops_total=message.hops_total,
            failure_reason=message.failure_reason, failed_party=message.failed_party,
        )  # fmt: skip


# The result JSON's keys that `result_message` types. A key outside them stays in the JSON only;
# tests/test_typed_result.py fails on one, so a new figure cannot be left out unnoticed.
_SCALARS = (
    "shared_individuals", "systemic_failures", "systemic_failure_rate", "expected_systemic_failure_rate",
    "homogenization", "homogenization_upper95", "undecodable_sums", "noise_margin",
)  # fmt: skip
_TEXTS = (
    "round_id", "homogenization_ci_method", "homogenization_note", "suppression_note",
    "undecodable_sums_note", "inference_note", "noise_note", "histogram_note", "pairwise_note",
    "group_suppression_note",
)  # fmt: skip
_LISTS = (
    "failure_count_histogram", "expected_failure_count_histogram", "suppressed_cells", "suppressed_failures",
)  # fmt: skip
_BY_COMPANY = ("failures", "failure_rates", "failure_rate_ci95")
_PAIRWISE = (
    "pairwise_homogenization", "pairwise_homogenization_ci95", "pairwise_homogenization_upper95",
    "pairwise_homogenization_test",
)  # fmt: skip
_OTHERS = (
    "schema_version", "companies", "suppressed", "suppression_reason", "noisy", "systemic_failure_rate_ci95",
    "homogenization_ci95", "homogenization_test", "pattern_counts", "inference_methods", "release_policy",
    "round", "list_sizes", "groups", "group_homogenization", "privacy_budget",
)  # fmt: skip
TYPED_KEYS = frozenset((*_SCALARS, *_TEXTS, *_LISTS, *_BY_COMPANY, *_PAIRWISE, *_OTHERS))


def result_message(result: Mapping[str, Any]) -> pb.RoundResult:
    """The typed form of a released result (the dict `release` made, or the JSON read back).
    Keys outside TYPED_KEYS are left out (a result stored by an older release may hold one)."""
    companies = [str(name) for name in result["companies"]]
    message = pb.RoundResult(
        schema_version=int(result.get("schema_version") or 0),
        companies=companies,
        company_count=len(companies),
        withheld=bool(result.get("suppressed")),
        withheld_reason=str(result.get("suppression_reason") or ""),
        noisy=bool(result.get("noisy")),
        company_figures=_company_figures(result, companies),
        patterns=_patterns(result.get("pattern_counts")),
        pairs=_pairs(result),
        inference_methods={str(k): str(v) for k, v in (result.get("inference_methods") or {}).items()},
        list_sizes={str(k): int(v) for k, v in (result.get("list_sizes") or {}).items()},
        groups=[_group(label, group, companies) for label, group in (result.get("groups") or {}).items()],
    )
    _fill_scalars(message, result)
    _set_interval(message.systemic_failure_rate_ci95, result.get("systemic_failure_rate_ci95"))
    _set_interval(message.homogenization_ci95, result.get("homogenization_ci95"))
    _set_test(message.homogenization_test, result.get("homogenization_test"))
    _set_release_policy(message.release_policy, result.get("release_policy"))
    _set_round(message.round, result.get("round"))
    _set_group_homogenization(message.group_homogenization, result.get("group_homogenization"))
    _set_spending(message.privacy_budget, result.get("privacy_budget"))
    return message


def _fill_scalars(message: pb.RoundResult, result: Mapping[str, Any]) -> None:
    for key in _SCALARS:  # null in the JSON: left unset
        if result.get(key) is not None:
            setattr(message, key, result[key])
    for key in _TEXTS:
        setattr(message, key, str(result.get(key) or ""))
    for key in _LISTS:
        getattr(message, key).extend(result.get(key) or ())


def _company_figures(result: Mapping[str, Any], companies: list[str]) -> list[pb.CompanyFigures]:
    if "failures" not in result and "failure_rates" not in result:
        return []  # a withheld result
    failures = result.get("failures") or {}
    rates = result.get("failure_rates") or {}
    intervals = result.get("failure_rate_ci95") or {}
    figures = []
    for name in companies:
        entry = pb.CompanyFigures(company=name)
        if failures.get(name) is not None:
            entry.failures = int(failures[name])
        if rates.get(name) is not None:
            entry.failure_rate = float(rates[name])
        _set_interval(entry.failure_rate_ci95, intervals.get(name))
        figures.append(entry)
    return figures


def _patterns(counts: Mapping[str, int | None] | None) -> list[pb.PatternCell]:
    cells = []
    for pattern, count in (counts or {}).items():
        cell = pb.PatternCell(pattern=pattern, suppressed=count is None)
        if count is not None:
            cell.count = int(count)
        cells.append(cell)
    return cells


def _pairs(result: Mapping[str, Any]) -> list[pb.PairFigures]:
    values = result.get("pairwise_homogenization") or {}
    intervals = result.get("pairwise_homogenization_ci95") or {}
    uppers = result.get("pairwise_homogenization_upper95") or {}
    tests = result.get("pairwise_homogenization_test") or {}
    keys = list(dict.fromkeys([*values, *intervals, *uppers, *tests]))
    pairs = []
    for key in keys:
        a, b = key.split(",")
        pair = pb.PairFigures(company_a=a, company_b=b)
        if values.get(key) is not None:
            pair.homogenization = float(values[key])
        if uppers.get(key) is not None:
            pair.homogenization_upper95 = float(uppers[key])
        _set_interval(pair.homogenization_ci95, intervals.get(key))
        _set_test(pair.homogenization_test, tests.get(key))
        pairs.append(pair)
    return pairs


def _set_interval(target: pb.Interval, interval: list[float] | None) -> None:
    if interval is not None:
        target.low, target.high = float(interval[0]), float(interval[1])


def _set_test(target: pb.HomogenizationTest, test: Mapping[str, Any] | None) -> None:
    if test is None:
        return
    target.SetInParent()
    target.method = str(test.get("method") or "")
    for key in (
        "p_value_greater",
        "p_value_less",
        "p_value_floor",
        "p_value_greater_holm",
        "p_value_less_holm",
    ):
        if test.get(key) is not None:
            setattr(target, key, float(test[key]))
    if test.get("exact") is not None:
        target.exact = bool(test["exact"])


def _set_release_policy(target: pb.ResultReleasePolicy, policy: Mapping[str, Any] | None) -> None:
    if policy is None:
        return
    target.min_shared_individuals = int(policy["min_shared_individuals"])
    target.min_cell_count = int(policy["min_cell_count"])
    dp = policy.get("differential_privacy")
    if dp is not None:
        target.differential_privacy.CopyFrom(
            pb.DifferentialPrivacy(
                mechanism=str(dp["mechanism"]),
                epsilon=float(dp["epsilon"]),
                delta=float(dp["delta"]),
                neighbouring=str(dp.get("neighbouring") or ""),
                scale=float(dp.get("scale") or 0.0),
                noise=str(dp.get("noise") or ""),
            )
        )


_TAG_MODES = {"masked": pb.TAG_MODE_MASKED, "re-randomised": pb.TAG_MODE_RERANDOMISED}


def _set_round(target: pb.RoundProvenance, made: Mapping[str, Any] | None) -> None:
    if made is None:
        return
    target.protocol_version = int(made["protocol_version"])
    target.failure_tags = _TAG_MODES[str(made["failure_tags"])]
    target.min_list_size = int(made["min_list_size"])
    dummies = made.get("dummies")
    if dummies is not None:
        target.dummies.CopyFrom(
            pb.DummiesUsed(
                epsilon=float(dummies["epsilon"]),
                delta=float(dummies["delta"]),
                padded_regions=str(dummies["padded_regions"]),
            )
        )


def _group(label: str, group: Mapping[str, Any], companies: list[str]) -> pb.GroupFigures:
    entry = pb.GroupFigures(
        label=label,
        withheld=bool(group.get("suppressed")),
        withheld_reason=str(group.get("suppression_reason") or ""),
        company_figures=_company_figures(group, companies),
        homogenization_note=str(group.get("homogenization_note") or ""),
        patterns=_patterns(group.get("pattern_counts")),
        suppressed_cells=list(group.get("suppressed_cells") or ()),
        suppressed_failures=list(group.get("suppressed_failures") or ()),
    )
    for key in ("shared_individuals", "systemic_failures", "systemic_failure_rate", "homogenization"):
        if group.get(key) is not None:
            setattr(entry, key, group[key])
    return entry


def _set_group_homogenization(target: pb.GroupHomogenization, figures: Mapping[str, Any] | None) -> None:
    if figures is None:
        return
    target.SetInParent()
    for key in ("avg", "unif", "worst"):
        if figures.get(key) is not None:
            setattr(target, key, float(figures[key]))
    target.worst_group = str(figures.get("worst_group") or "")
    target.groups_used.extend(figures.get("groups_used") or ())
    target.notes.extend(figures.get("notes") or ())


def _set_spending(target: pb.RosterSpending, budget: Mapping[str, Any] | None) -> None:
    if budget is None:
        return
    target.roster.extend(budget["roster"])
    target.spent_epsilon = float(budget["spent_epsilon"])
    target.spent_delta = float(budget["spent_delta"])
    if budget.get("cap") is not None:
        target.cap = float(budget["cap"])
