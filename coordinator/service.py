"""gRPC servicers: thin translation between messages and the RoundBook.

Every call is made by an authenticated identity (the client certificate's
`monoculture:<role>:<name>`): companies act only as themselves, only the
auditor administers rounds. With --insecure, names are taken on trust.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, NoReturn

import grpc

from coordinator.rounds import RoundBook
from monoculture.core.errors import LimitExceeded, MonocultureError, NotPermitted, UnknownRound
from monoculture.core.identity import Identity, Role, identity_of
from monoculture.core.protocol import RoundPhase, RoundState
from monoculture.core.psi_crypto import InvalidPoint
from monoculture.core.wire import ListAddress
from monoculture.v1 import monoculture_pb2 as pb
from monoculture.v1 import monoculture_pb2_grpc as pb_grpc

log = logging.getLogger("monoculture.coordinator")

_CODES: list[tuple[type[MonocultureError], grpc.StatusCode]] = [
    (NotPermitted, grpc.StatusCode.PERMISSION_DENIED),
    (UnknownRound, grpc.StatusCode.NOT_FOUND),
    (LimitExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (InvalidPoint, grpc.StatusCode.INVALID_ARGUMENT),
]


def _abort(context: grpc.ServicerContext, error: MonocultureError) -> NoReturn:
    code = next((c for kind, c in _CODES if isinstance(error, kind)), grpc.StatusCode.FAILED_PRECONDITION)
    context.abort(code, str(error))
    raise AssertionError("unreachable")  # context.abort raises


class Authenticator:
    """Who is calling: from the TLS client certificate, or (insecure) from the request."""

    def __init__(self, secure: bool) -> None:
        self.secure = secure

    def peer(self, context: grpc.ServicerContext) -> Identity | None:
        if not self.secure:
            return None
        certificates = context.auth_context().get("x509_pem_cert") or []
        if not certificates:
            raise NotPermitted("no client certificate")
        return identity_of(certificates[0])

    def company(self, context: grpc.ServicerContext, claimed: str) -> str:
        """The calling company's name; refuses a company acting as another."""
        identity = self.peer(context)
        if identity is None:
            return claimed
        if identity.role != Role.COMPANY:
            raise NotPermitted(f"{identity} may not act as a company")
        if claimed and claimed != identity.name:
            raise NotPermitted(f"certificate names company {identity.name}; the request acts as {claimed}")
        return identity.name

    def auditor(self, context: grpc.ServicerContext) -> None:
        identity = self.peer(context)
        if identity is not None and identity.role != Role.AUDITOR:
            raise NotPermitted(f"round administration needs the auditor's credential, not {identity}'s")


class CompanyServicer(pb_grpc.CompanyServiceServicer):
    def __init__(self, book: RoundBook, auth: Authenticator) -> None:
        self._book = book
        self._auth = auth

    def PollWork(self, request: pb.PollWorkRequest, context: Any) -> pb.PollWorkResponse:
        try:
            company = self._auth.company(context, request.company)
        except MonocultureError as exc:
            _abort(context, exc)
        return self._book.poll_work(company, request.wait_seconds)

    def Enroll(self, request: pb.EnrollRequest, context: Any) -> pb.EnrollResponse:
        try:
            self._book.enroll(self._auth.company(context, request.company), request)
        except MonocultureError as exc:
            _abort(context, exc)
        return pb.EnrollResponse()

    def UploadList(self, request_iterator: Iterator[pb.ListChunk], context: Any) -> pb.UploadReceipt:
        first = next(request_iterator, None)
        if first is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "upload held no chunks")
            raise AssertionError("unreachable")  # context.abort raises
        try:
            company = self._auth.company(context, first.sender)
            elements = self._book.receive_list(company, _prepend(first, request_iterator))
        except MonocultureError as exc:
            _abort(context, exc)
        except grpc.RpcError:
            # The sender went away mid-stream; what arrived is kept, the retry completes it.
            log.info("an upload by %s broke off; waiting for the retry", first.sender)
            context.abort(grpc.StatusCode.CANCELLED, "upload broke off")
        return pb.UploadReceipt(elements=elements)

    def DownloadList(self, request: pb.DownloadListRequest, context: Any) -> Iterator[pb.ListChunk]:
        address = ListAddress(request.round_id, request.list_owner, request.hop)
        try:
            chunks = self._book.download_list(self._auth.company(context, request.company), address)
        except MonocultureError as exc:
            _abort(context, exc)
        yield from chunks

    def Withdraw(self, request: pb.WithdrawRequest, context: Any) -> pb.WithdrawResponse:
        try:
            company = self._auth.company(context, request.company)
            self._book.withdraw(request.round_id, company, request.reason[:2000], request.blamed)
        except MonocultureError as exc:
            _abort(context, exc)
        return pb.WithdrawResponse()

    def GetStatus(self, request: pb.CompanyStatusRequest, context: Any) -> pb.RoundStatus:
        try:
            company = self._auth.company(context, request.company)
            return status_message(self._book.status(request.round_id, company))
        except MonocultureError as exc:
            _abort(context, exc)


def _prepend(first: pb.ListChunk, rest: Iterator[pb.ListChunk]) -> Iterator[pb.ListChunk]:
    yield first
    yield from rest


class AuditorServicer(pb_grpc.AuditorServiceServicer):
    def __init__(self, book: RoundBook, auth: Authenticator) -> None:
        self._book = book
        self._auth = auth

    def OpenRound(self, request: pb.OpenRoundRequest, context: Any) -> pb.RoundStatus:
        try:
            self._auth.auditor(context)
            state = self._book.open_round(
                list(request.companies), request.min_list_size, request.deadline_seconds
            )
        except (NotPermitted, LimitExceeded) as exc:
            _abort(context, exc)
        except MonocultureError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return status_message(state)

    def GetRoundStatus(self, request: pb.RoundRef, context: Any) -> pb.RoundStatus:
        try:
            self._auth.auditor(context)
            return status_message(self._book.status(request.round_id))
        except MonocultureError as exc:
            _abort(context, exc)

    def GetRoundResult(self, request: pb.RoundRef, context: Any) -> pb.RoundResult:
        try:
            self._auth.auditor(context)
            state, result_json = self._book.result(request.round_id)
        except MonocultureError as exc:
            _abort(context, exc)
        if state.phase != RoundPhase.COMPLETE:
            detail = f": {state.failure_reason}" if state.failure_reason else ""
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"round {state.round_id} is {state.phase}, no result{detail}",
            )
        return pb.RoundResult(round_id=state.round_id, phase=state.phase, result_json=result_json)


def status_message(state: RoundState) -> pb.RoundStatus:
    return pb.RoundStatus(
        round_id=state.round_id,
        phase=state.phase,
        companies=list(state.ring.roster),
        hops_done=len(state.done),
        hops_total=state.hops_total,
        failure_reason=state.failure_reason,
        failed_party=state.failed_party,
    )
