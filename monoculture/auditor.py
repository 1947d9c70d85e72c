"""The auditor's side of round administration: open a round, watch it, fetch its result, read the
privacy ledger."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import grpc

from monoculture.core.errors import MonocultureError, RoundFailed
from monoculture.core.messages import Status
from monoculture.core.protocol import TERMINAL_PHASES, RoundPhase
from monoculture.core.timing import SYSTEM_CLOCK, Clock, retry
from monoculture.transport import TlsFiles, channel, named_retry_delay, warn_insecure
from monoculture.v1 import monoculture_pb2 as pb
from monoculture.v1 import monoculture_pb2_grpc as pb_grpc

RATE_PATIENCE = 30.0  # seconds the auditor's client waits out rate refusals before it reports one


def _unavailable(error: Exception) -> bool:
    return isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.UNAVAILABLE


class AuditorClient:
    def __init__(self, address: str, tls: TlsFiles | None, clock: Clock = SYSTEM_CLOCK) -> None:
        """`tls`: the auditor's certificate and key and the CA; None only with --insecure."""
        self.address = address
        self._clock = clock
        if tls is None:
            warn_insecure()
        self._channel = channel(address, tls)
        self._stub = pb_grpc.AuditorServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AuditorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Callable[..., Any], request: Any, retry_until: float = 0.0) -> Any:
        """One call; UNAVAILABLE is retried until `retry_until` (monotonic), e.g. across a restart.
        A rate refusal (RESOURCE_EXHAUSTED naming its delay) is waited out and the call made again,
        for up to RATE_PATIENCE seconds or until `retry_until`, whichever is later."""
        patience = max(retry_until, self._clock.monotonic() + RATE_PATIENCE)
        while True:
            try:
                return retry(
                    lambda: method(request, timeout=30), retryable=_unavailable, give_up_at=retry_until,
                    clock=self._clock,
                )  # fmt: skip
            except grpc.RpcError as exc:
                delay = named_retry_delay(exc)
                if delay is None or self._clock.monotonic() + delay > patience:
                    self._explain(exc)
                self._clock.sleep(delay)

    def _explain(self, exc: grpc.RpcError) -> NoReturn:
        """Turn a gRPC error into one a person can act on."""
        code = exc.code()
        if code == grpc.StatusCode.UNAVAILABLE:
            raise MonocultureError(
                f"coordinator at {self.address} is unreachable ({exc.details()})",
                hint="check the address, that `monoculture coordinator serve` is running, and that "
                "both sides use certificates from the same CA (or both --insecure)",
            ) from None
        raise MonocultureError(f"coordinator refused: {exc.details()}", where=code.name) from None

    def open_round(
        self,
        companies: list[str],
        min_list_size: int = 1,
        deadline_seconds: float = 0,
        groups_from: str = "",
        group_labels: Sequence[str] = (),
        rerandomise: bool = False,
    ) -> Status:
        """`groups_from`, `group_labels`: group-level homogenization over the groups of that
        company's group column, whose labels the round declares here (in order). `rerandomise`:
        re-randomised failure tags (docs/PROTOCOL.md, "Re-randomised tags")."""
        request = pb.OpenRoundRequest(
            companies=companies, min_list_size=min_list_size, deadline_seconds=deadline_seconds,
            groups_from=groups_from, group_labels=list(group_labels), rerandomise_tags=rerandomise,
        )  # fmt: skip
        return Status.of(self._call(self._stub.OpenRound, request))

    def status(self, round_id: str, retry_until: float = 0.0) -> Status:
        request = pb.RoundRef(round_id=round_id)
        return Status.of(self._call(self._stub.GetRoundStatus, request, retry_until))

    def result(self, round_id: str) -> dict[str, Any]:
        """The released result JSON of a completed round, as a dict."""
        result: dict[str, Any] = json.loads(self._result_reply(round_id).result_json)
        return result

    def typed_result(self, round_id: str) -> pb.RoundResult:
        """The same released result as typed fields (docs/PROTOCOL.md, "Typed result")."""
        return self._result_reply(round_id).result

    def _result_reply(self, round_id: str) -> pb.GetRoundResultResponse:
        reply: pb.GetRoundResultResponse = self._call(
            self._stub.GetRoundResult, pb.RoundRef(round_id=round_id)
        )
        return reply

    def budget(self, companies: list[str]) -> dict[str, Any]:
        """The coordinator's privacy ledger for a roster (any order), JSON-ready: spent epsilon and
        delta (reserved and spent rounds), the cap (None: no cap) and every round."""
        request = pb.PrivacyBudgetRequest(companies=companies)
        reply: pb.PrivacyBudget = self._call(self._stub.GetPrivacyBudget, request)
        return budget_dict(reply)

    def history(self, companies: list[str]) -> list[dict[str, Any]]:
        """Every round of a roster (any order; [] for every round), oldest first: id, phase,
        companies, opened_at, ended_at (None in flight), the failure reason of a failed one and
        the released result of a completed one (None otherwise)."""
        request = pb.PrivacyBudgetRequest(companies=companies)
        reply: pb.RoundHistory = self._call(self._stub.ListRounds, request)
        return [
            {
                "round_id": entry.status.round_id, "phase": Status.of(entry.status).phase,
                "companies": list(entry.status.companies), "opened_at": entry.opened_at,
                "ended_at": entry.ended_at or None, "failure_reason": entry.status.failure_reason or None,
                "result": json.loads(entry.result_json) if entry.result_json else None,
            }
            for entry in reply.rounds
        ]  # fmt: skip

    def cancel(self, round_id: str) -> Status:
        """End a round in flight: it fails naming the auditor; the companies forget its keys."""
        return Status.of(self._call(self._stub.CancelRound, pb.RoundRef(round_id=round_id)))

    def wait(
        self,
        round_id: str,
        timeout: float,
        on_status: Callable[[Status], None] | None = None,
        interval: float = 0.2,
    ) -> Status:
        """Poll until the round ends; a failed round raises RoundFailed naming the party."""
        deadline = self._clock.monotonic() + timeout
        while True:
            status = self.status(round_id, retry_until=deadline)
            if on_status is not None:
                on_status(status)
            if status.phase in TERMINAL_PHASES:
                break
            if self._clock.monotonic() > deadline:
                raise RoundFailed(
                    f"round {round_id} still {status.phase} after {timeout:.0f} s "
                    f"({status.hops_done}/{status.hops_total} list hops done)",
                    hint="check that every company's daemon is running (`monoculture client run`)",
                )
            self._clock.sleep(interval)
        if status.phase == RoundPhase.FAILED:
            raise RoundFailed(
                f"round {round_id} failed: {status.failure_reason}", where=status.failed_party or ""
            )
        return status


def budget_dict(budget: pb.PrivacyBudget) -> dict[str, Any]:
    """A PrivacyBudget as JSON-ready data (an infinite cap is None: no cap)."""
    return {
        "roster": list(budget.roster),
        "spent_epsilon": budget.spent_epsilon,
        "spent_delta": budget.spent_delta,
        "cap": None if math.isinf(budget.cap_epsilon) else budget.cap_epsilon,
        "rounds": [
            {
                "round_id": entry.round_id, "status": entry.status, "dp_mechanism": entry.dp_mechanism,
                "epsilon": entry.epsilon, "delta": entry.delta, "opened_at": entry.opened_at,
            }
            for entry in budget.rounds
        ],
    }  # fmt: skip
