"""Clients wait out a rate refusal for the delay it names, within their deadline, instead of
failing: the auditor's client (a script polling status) and the company daemons."""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

import grpc
import pytest
from conftest import example

from monoculture.auditor import AuditorClient
from monoculture.coordinator.config import Limits
from monoculture.core.dataset import InputSpec
from monoculture.core.protocol import RETRY_AFTER_METADATA
from monoculture.research.simulate import CompanyInput, start_company, start_coordinator
from monoculture.transport import named_retry_delay

pytestmark = pytest.mark.e2e
NAMES = ["google", "microsoft", "ibm"]


class _Refusal(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, metadata: tuple[tuple[str, str], ...]) -> None:
        self._code, self._metadata = code, metadata

    def code(self) -> grpc.StatusCode:
        return self._code

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


def test_only_a_rate_refusal_that_names_its_delay_is_waited_out() -> None:
    named = ((RETRY_AFTER_METADATA, "0.250"),)
    assert named_retry_delay(_Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, named)) == 0.25
    assert named_retry_delay(_Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, ())) is None  # calls in flight
    assert named_retry_delay(_Refusal(grpc.StatusCode.FAILED_PRECONDITION, named)) is None
    assert (
        named_retry_delay(_Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, ((RETRY_AFTER_METADATA, "9e9"),)))
        is None
    )


def test_a_script_polling_faster_than_the_limit_waits_instead_of_failing(tmp_path: Path) -> None:
    limits = Limits(calls_per_second_per_company=4.0, burst_calls_per_company=2)
    with ExitStack() as stack:
        address = start_coordinator(tmp_path, stack, limits=limits)
        with AuditorClient(address, None) as auditor:
            started = time.monotonic()
            for _ in range(10):  # 10 calls at once against 4 a second in bursts of 2
                auditor.budget(NAMES)
            took = time.monotonic() - started
    assert took >= (10 - 2) / 4 * 0.9  # it waited for the limit rather than failing


def test_a_round_completes_under_a_tight_call_rate(tmp_path: Path) -> None:
    limits = Limits(calls_per_second_per_company=3.0, burst_calls_per_company=2)
    with ExitStack() as stack:
        address = start_coordinator(tmp_path, stack, limits=limits)
        for name in NAMES:
            start_company(CompanyInput(name, InputSpec(example("digit", name))), address, tmp_path, stack)
        with AuditorClient(address, None) as auditor:
            round_id = auditor.open_round(NAMES).round_id
            auditor.wait(round_id, timeout=180, interval=0.05)  # polls 20 times a second: waited out
            assert auditor.result(round_id)["shared_individuals"] == 2000
