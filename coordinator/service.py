"""gRPC servicers: thin translation between messages and the RoundBook."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, NoReturn

import grpc

from coordinator.rounds import RoundBook
from monoculture.core.errors import MonocultureError, ProtocolError
from monoculture.core.protocol import RoundPhase
from monoculture.core.wire import ListAddress
from monoculture.v1 import monoculture_pb2 as pb
from monoculture.v1 import monoculture_pb2_grpc as pb_grpc

log = logging.getLogger("monoculture.coordinator")


def _abort(context: grpc.ServicerContext, error: MonocultureError) -> NoReturn:
    unknown = isinstance(error, ProtocolError) and error.message.startswith("unknown round")
    code = grpc.StatusCode.NOT_FOUND if unknown else grpc.StatusCode.FAILED_PRECONDITION
    context.abort(code, str(error))
    raise AssertionError("unreachable")  # context.abort raises


class CompanyServicer(pb_grpc.CompanyServiceServicer):
    def __init__(self, book: RoundBook) -> None:
        self._book = book

    def PollWork(self, request: pb.PollWorkRequest, context: Any) -> pb.PollWorkResponse:
        return self._book.poll_work(request.company, request.wait_seconds)

    def Enroll(self, request: pb.EnrollRequest, context: Any) -> pb.EnrollResponse:
        try:
            self._book.enroll(request.round_id, request.company, request.tag_public_key, request.list_size)
        except MonocultureError as exc:
            _abort(context, exc)
        return pb.EnrollResponse()

    def UploadList(self, request_iterator: Iterator[pb.ListChunk], context: Any) -> pb.UploadReceipt:
        first = next(request_iterator, None)
        if first is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "upload held no chunks")
            raise AssertionError("unreachable")  # context.abort raises
        try:
            elements = self._book.receive_list(first.sender, _prepend(first, request_iterator))
        except MonocultureError as exc:
            _abort(context, exc)
        return pb.UploadReceipt(elements=elements)

    def DownloadList(self, request: pb.DownloadListRequest, context: Any) -> Iterator[pb.ListChunk]:
        address = ListAddress(request.round_id, request.list_owner, request.hop)
        try:
            chunks = self._book.download_list(request.company, address)
        except MonocultureError as exc:
            _abort(context, exc)
        yield from chunks

    def Withdraw(self, request: pb.WithdrawRequest, context: Any) -> pb.WithdrawResponse:
        try:
            self._book.withdraw(request.round_id, request.company, request.reason[:2000])
        except MonocultureError as exc:
            _abort(context, exc)
        return pb.WithdrawResponse()


def _prepend(first: pb.ListChunk, rest: Iterator[pb.ListChunk]) -> Iterator[pb.ListChunk]:
    yield first
    yield from rest


class AuditorServicer(pb_grpc.AuditorServiceServicer):
    def __init__(self, book: RoundBook) -> None:
        self._book = book

    def OpenRound(self, request: pb.OpenRoundRequest, context: Any) -> pb.RoundStatus:
        try:
            state = self._book.open_round(list(request.companies), request.min_list_size)
        except MonocultureError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return status_message(state)

    def GetRoundStatus(self, request: pb.RoundRef, context: Any) -> pb.RoundStatus:
        try:
            return status_message(self._book.status(request.round_id))
        except MonocultureError as exc:
            _abort(context, exc)

    def GetRoundResult(self, request: pb.RoundRef, context: Any) -> pb.RoundResult:
        try:
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


def status_message(state: Any) -> pb.RoundStatus:
    return pb.RoundStatus(
        round_id=state.round_id,
        phase=state.phase,
        companies=list(state.ring.roster),
        hops_done=len(state.done),
        hops_total=state.hops_total,
        failure_reason=state.failure_reason,
        failed_party=state.failed_party,
    )
