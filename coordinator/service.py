"""gRPC servicers: thin translation between messages and the RoundBook.

Every call is made by an authenticated identity (the client certificate's
`monoculture:<role>:<name>`): companies act only as themselves, only the
auditor administers rounds. With --insecure, names are taken on trust.

Every call then passes an admission gate (coordinator/admission.py) keyed by the
caller's name before it does any work; an upload's certificate is checked before a
message of its stream is read.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol, TypeVar, cast

import grpc

from monoculture.coordinator.admission import AdmissionGate
from monoculture.coordinator.rounds import RoundBook
from monoculture.coordinator.state import RoundState
from monoculture.core.errors import (
    LimitExceeded,
    MalformedRequest,
    MonocultureError,
    NotPermitted,
    ProtocolError,
    UnknownRound,
)
from monoculture.core.identity import Identity, Role, identity_of
from monoculture.core.messages import phase_message, result_message
from monoculture.core.protocol import RETRY_AFTER_METADATA, RoundPhase
from monoculture.core.psi_crypto import InvalidPoint
from monoculture.core.revocation import RevocationListUnusable, certificate_serial
from monoculture.core.wire import ListAddress
from monoculture.v1 import monoculture_pb2 as pb
from monoculture.v1 import monoculture_pb2_grpc as pb_grpc

log = logging.getLogger("monoculture.coordinator")

POLL_SLICE_SECONDS = 1.0  # a long poll checks this often that its caller is still there
MAX_POLL_SECONDS = 60.0  # RoundBook.poll_work's own cap on one long poll

_CODES: list[tuple[type[MonocultureError], grpc.StatusCode]] = [
    (NotPermitted, grpc.StatusCode.PERMISSION_DENIED),
    (UnknownRound, grpc.StatusCode.NOT_FOUND),
    (LimitExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (InvalidPoint, grpc.StatusCode.INVALID_ARGUMENT),
    (MalformedRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (RevocationListUnusable, grpc.StatusCode.UNAVAILABLE),
]

Method = TypeVar("Method", bound=Callable[..., Any])


def status_code(error: MonocultureError, default: grpc.StatusCode) -> grpc.StatusCode:
    """The gRPC status a project error is answered with."""
    return next((code for kind, code in _CODES if isinstance(error, kind)), default)


def _details(error: MonocultureError) -> str:
    """The status details: the message, and what to do when the error says."""
    return f"{error}; what to do: {error.hint}" if error.hint else str(error)


def _count_refusal(servicer: Any, code: grpc.StatusCode) -> None:
    book = getattr(servicer, "_book", None)
    metrics = getattr(book, "metrics", None)
    if metrics is not None:
        metrics.refusals.labels(code.name).inc()


def _name_retry_delay(context: grpc.ServicerContext, exc: MonocultureError) -> None:
    """A rate refusal says, in trailing metadata, when the call would be admitted."""
    if isinstance(exc, LimitExceeded) and exc.retry_after is not None:
        context.set_trailing_metadata(((RETRY_AFTER_METADATA, f"{exc.retry_after:.3f}"),))


def answers_errors(
    default: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION,
) -> Callable[[Method], Method]:
    """Servicer methods raise project errors; this answers each with its status code and message.

    `default` is the code of an error not in the table (a ProtocolError is a request the
    protocol does not allow now: FAILED_PRECONDITION). Works on unary and streaming replies.
    """

    def decorate(method: Method) -> Method:
        if inspect.isgeneratorfunction(method):

            @functools.wraps(method)
            def streaming(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    yield from method(self, request, context)
                except MonocultureError as exc:
                    _name_retry_delay(context, exc)
                    _count_refusal(self, status_code(exc, default))
                    context.abort(status_code(exc, default), _details(exc))

            return cast(Method, streaming)

        @functools.wraps(method)
        def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return method(self, request, context)
            except MonocultureError as exc:
                _name_retry_delay(context, exc)
                _count_refusal(self, status_code(exc, default))
                context.abort(status_code(exc, default), _details(exc))

        return cast(Method, unary)

    return decorate


class Revocations(Protocol):
    """The CA's revocation list as the coordinator holds it (transport.RevocationWatch)."""

    def check(self, certificate_pem: bytes, who: str = "") -> None: ...


def _check_revocation(revocations: Revocations, certificate_pem: bytes, identity: Identity) -> None:
    """CertificateRevoked (PERMISSION_DENIED) for a revoked caller; while the list cannot be used,
    RevocationListUnusable (UNAVAILABLE) telling the caller less than the log tells the operator."""
    try:
        revocations.check(certificate_pem, str(identity))
    except RevocationListUnusable:  # logged, with the file and the reason, by the watch
        raise RevocationListUnusable(
            "the coordinator cannot check certificates now: its certificate revocation list is "
            "missing, not the CA's, or past its next update",
            hint="retry later; the coordinator's operator installs the CA's current list",
        ) from None


class Authenticator:
    """Who is calling: from the TLS client certificate, or (insecure) from the request. With a
    CRL, every call's certificate is checked against it: a revoked one is refused
    (PERMISSION_DENIED, naming the revocation), and no call is served while the list is unusable
    (UNAVAILABLE: revocations cannot be known)."""

    def __init__(self, secure: bool, revocations: Revocations | None = None) -> None:
        self.secure = secure
        self._revocations = revocations
        self._serials: dict[Identity, int] = {}  # the certificate each party presented last

    def peer(self, context: grpc.ServicerContext) -> Identity | None:
        if not self.secure:
            return None
        certificates = context.auth_context().get("x509_pem_cert") or []
        if not certificates:
            raise NotPermitted("no client certificate")
        identity = identity_of(certificates[0])
        if self._revocations is not None:
            _check_revocation(self._revocations, certificates[0], identity)
        self._note_renewal(identity, certificates[0])
        return identity

    def _note_renewal(self, identity: Identity, certificate_pem: bytes) -> None:
        """Log when a party starts presenting another certificate (a renewal, or a rotation)."""
        serial = certificate_serial(certificate_pem)
        before = self._serials.get(identity)
        if before != serial:
            self._serials[identity] = serial
            if before is not None:
                log.info("%s now presents the certificate with serial %x (was %x)", identity, serial, before)

    def certified_company(self, context: grpc.ServicerContext) -> str | None:
        """The calling company's name from its certificate, before any message is read;
        None with --insecure (the name then comes from the request); refuses other roles."""
        identity = self.peer(context)
        if identity is None:
            return None
        if identity.role != Role.COMPANY:
            raise NotPermitted(f"{identity} may not act as a company")
        return identity.name

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

    def auditor(self, context: grpc.ServicerContext) -> str:
        """The auditor's name ("auditor" with --insecure); refuses every other role."""
        identity = self.peer(context)
        if identity is None:
            return "auditor"
        if identity.role != Role.AUDITOR:
            raise NotPermitted(f"round administration needs the auditor's credential, not {identity}'s")
        return identity.name


def _admitted(
    gate: AdmissionGate | None, party: str, long_poll: bool = False
) -> AbstractContextManager[None]:
    """A slot of `party`'s in `gate` for a `with` block (no gate: no limit, e.g. in-process tests)."""
    return nullcontext() if gate is None else gate.admit(party, long_poll=long_poll)


def admitted(*, long_poll: bool = False) -> Callable[[Method], Method]:
    """A company call (the request names the company) holds a slot of the caller's in the
    servicer's gate while it runs, a streamed reply until its last message; a call over the
    caller's limits is refused before it does any work. Goes inside `answers_errors`."""

    def decorate(method: Method) -> Method:
        def slot(self: CompanyServicer, request: Any, context: Any) -> AbstractContextManager[None]:
            return _admitted(self._gate, self._auth.company(context, request.company), long_poll)

        if inspect.isgeneratorfunction(method):

            @functools.wraps(method)
            def streaming(self: CompanyServicer, request: Any, context: Any) -> Iterator[Any]:
                with slot(self, request, context):
                    yield from method(self, request, context)

            return cast(Method, streaming)

        @functools.wraps(method)
        def unary(self: CompanyServicer, request: Any, context: Any) -> Any:
            with slot(self, request, context):
                return method(self, request, context)

        return cast(Method, unary)

    return decorate


def _still_there(context: Any) -> bool:
    is_active = getattr(context, "is_active", None)
    return True if is_active is None else bool(is_active())


class CompanyServicer(pb_grpc.CompanyServiceServicer):
    def __init__(self, book: RoundBook, auth: Authenticator, gate: AdmissionGate | None = None) -> None:
        """`gate`: each company's calls in flight, long polls and call rate (None: unlimited)."""
        self._book = book
        self._auth = auth
        self._gate = gate

    @answers_errors()
    @admitted(long_poll=True)
    def PollWork(self, request: pb.PollWorkRequest, context: Any) -> pb.PollWorkResponse:
        company = self._auth.company(context, request.company)
        return self._poll(company, request.wait_seconds, context)

    def _poll(self, company: str, wait_seconds: float, context: Any) -> pb.PollWorkResponse:
        """RoundBook.poll_work in slices, so that the poll of a caller that went away (a daemon
        killed mid-poll) gives back its thread and its long-poll slot within a slice."""
        wait = max(0.0, min(wait_seconds, MAX_POLL_SECONDS))
        deadline = time.monotonic() + wait
        while True:
            remaining = deadline - time.monotonic()
            response = self._book.poll_work(company, max(0.0, min(remaining, POLL_SLICE_SECONDS)))
            if response.WhichOneof("work") is not None or remaining <= POLL_SLICE_SECONDS:
                return response
            if not _still_there(context):
                return pb.PollWorkResponse()

    @answers_errors()
    @admitted()
    def Enroll(self, request: pb.EnrollRequest, context: Any) -> pb.EnrollResponse:
        self._book.enroll(self._auth.company(context, request.company), request)
        return pb.EnrollResponse()

    @answers_errors()
    def UploadList(self, request_iterator: Iterator[pb.ListChunk], context: Any) -> pb.UploadReceipt:
        # Who is sending is known from the certificate before a message is read: another
        # role, or a company over its limits, is refused without reading the stream.
        certified = self._auth.certified_company(context)
        with _admitted(self._gate if certified is not None else None, certified or ""):
            first = next(request_iterator, None)
            if first is None:
                raise MalformedRequest("upload held no chunks")
            company = self._auth.company(context, first.sender)
            with _admitted(self._gate if certified is None else None, company):  # --insecure
                return self._receive(company, first, request_iterator, context)

    def _receive(
        self, company: str, first: pb.ListChunk, rest: Iterator[pb.ListChunk], context: Any
    ) -> pb.UploadReceipt:
        try:
            elements = self._book.receive_list(company, _prepend(first, rest))
        except grpc.RpcError:
            # The sender went away mid-stream; what arrived is kept, the retry completes it.
            log.info("an upload by %s broke off; waiting for the retry", company)
            context.abort(grpc.StatusCode.CANCELLED, "upload broke off")
        return pb.UploadReceipt(elements=elements)

    @answers_errors()
    @admitted()
    def DownloadList(self, request: pb.DownloadListRequest, context: Any) -> Iterator[pb.ListChunk]:
        address = ListAddress(request.round_id, request.list_owner, request.hop)
        yield from self._book.download_list(self._auth.company(context, request.company), address)

    @answers_errors()
    @admitted()
    def Withdraw(self, request: pb.WithdrawRequest, context: Any) -> pb.WithdrawResponse:
        company = self._auth.company(context, request.company)
        evidence = request.evidence if request.HasField("evidence") else None
        self._book.withdraw(request.round_id, company, request.reason[:2000], request.blamed, evidence)
        return pb.WithdrawResponse()

    @answers_errors()
    @admitted()
    def ConfirmKeys(self, request: pb.KeyConfirmations, context: Any) -> pb.ConfirmKeysResponse:
        self._book.confirm_keys(self._auth.company(context, request.company), request)
        return pb.ConfirmKeysResponse()

    @answers_errors()
    @admitted()
    def GetStatus(self, request: pb.CompanyStatusRequest, context: Any) -> pb.RoundStatus:
        company = self._auth.company(context, request.company)
        return status_message(self._book.status(request.round_id, company))


def _prepend(first: pb.ListChunk, rest: Iterator[pb.ListChunk]) -> Iterator[pb.ListChunk]:
    yield first
    yield from rest


class AuditorServicer(pb_grpc.AuditorServiceServicer):
    def __init__(self, book: RoundBook, auth: Authenticator, gate: AdmissionGate | None = None) -> None:
        """`gate`: the auditor's own calls in flight and call rate (None: unlimited)."""
        self._book = book
        self._auth = auth
        self._gate = gate

    def _admit(self, context: Any) -> AbstractContextManager[None]:
        """Only the auditor, within its limits, for a `with` block."""
        return _admitted(self._gate, self._auth.auditor(context))

    @answers_errors(default=grpc.StatusCode.INVALID_ARGUMENT)
    def OpenRound(self, request: pb.OpenRoundRequest, context: Any) -> pb.RoundStatus:
        with self._admit(context):
            companies = list(request.companies)
            state = self._book.open_round(
                companies, request.min_list_size, request.deadline_seconds,
                groups_from=request.groups_from, group_labels=list(request.group_labels),
                rerandomise=request.rerandomise_tags,
            )  # fmt: skip
        return status_message(state)

    @answers_errors()
    def GetRoundStatus(self, request: pb.RoundRef, context: Any) -> pb.RoundStatus:
        with self._admit(context):
            return status_message(self._book.status(request.round_id))

    @answers_errors()
    def GetRoundResult(self, request: pb.RoundRef, context: Any) -> pb.GetRoundResultResponse:
        with self._admit(context):
            state, result_json = self._book.result(request.round_id)
        if state.phase != RoundPhase.COMPLETE:
            detail = f": {state.failure_reason}" if state.failure_reason else ""
            raise ProtocolError(f"round {state.round_id} is {state.phase}, no result{detail}")
        return pb.GetRoundResultResponse(
            round_id=state.round_id, phase=phase_message(state.phase), phase_name=state.phase.value,
            result_json=result_json, result=typed_result(result_json),
        )  # fmt: skip

    @answers_errors(default=grpc.StatusCode.INVALID_ARGUMENT)
    def GetPrivacyBudget(self, request: pb.PrivacyBudgetRequest, context: Any) -> pb.PrivacyBudget:
        with self._admit(context):
            return self._book.budget(list(request.companies))

    @answers_errors(default=grpc.StatusCode.INVALID_ARGUMENT)
    def ListRounds(self, request: pb.PrivacyBudgetRequest, context: Any) -> pb.RoundHistory:
        with self._admit(context):
            return history_message(self._book.history(list(request.companies)))

    @answers_errors()
    def CancelRound(self, request: pb.RoundRef, context: Any) -> pb.RoundStatus:
        with self._admit(context):
            return status_message(self._book.cancel(request.round_id))


def history_message(rounds: list[tuple[RoundState, str]]) -> pb.RoundHistory:
    return pb.RoundHistory(
        rounds=[
            pb.RoundEntry(
                status=status_message(state),
                opened_at=state.opened_at,
                result_json=result_json,
                ended_at=state.ended_at,
                result=typed_result(result_json) if result_json else None,
            )
            for state, result_json in rounds
        ]
    )


def typed_result(result_json: str) -> pb.RoundResult:
    """The typed result, made from the released result JSON the coordinator stored: one released
    result, two forms."""
    return result_message(json.loads(result_json))


def status_message(state: RoundState) -> pb.RoundStatus:
    return pb.RoundStatus(
        round_id=state.round_id,
        phase=phase_message(state.phase),
        phase_name=state.phase.value,
        companies=list(state.ring.roster),
        hops_done=len(state.done),
        hops_total=state.hops_total,
        failure_reason=state.failure_reason,
        failed_party=state.failed_party,
    )
