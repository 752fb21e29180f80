"""The worker's task calls on one Session stream, with the unary stub's signatures.

`WorkerSession.CompleteTask(request, timeout=...)` behaves as `stub.CompleteTask` does: it returns
the response or raises `grpc.aio.AioRpcError` with the call's status. Underneath, every call is a
message on one bidirectional stream, which costs both processes far less than a unary call. When
the stream breaks, the calls in flight on it fail UNAVAILABLE (the worker re-sends them, as after
a unary call's UNAVAILABLE) and the next call opens a new stream.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import grpc
from google.protobuf.message import Message
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from cmo._telemetry import W3C
from cmo.api.sessions import session_calls
from cmo.api.v1 import worker_service_pb2 as pb
from cmo.api.v1.worker_service_pb2_grpc import WorkerServiceStub

__all__ = ["SessionStub", "WorkerSession"]

logger = logging.getLogger(__name__)

Resp = TypeVar("Resp", bound=Message)

MAX_SESSION_MESSAGE_BYTES = 1024 * 1024
"""Requests larger than this (a large state or activity result) go as unary calls."""

_STREAM_LOST = "the worker session's stream ended; re-send the call"


class _Stream:
    """One open Session call: its writer, its reader and the calls waiting for an answer."""

    def __init__(self, call: grpc.aio.StreamStreamCall[pb.SessionRequest, pb.SessionResponse]) -> None:
        self.call = call
        self.pending: dict[int, asyncio.Future[pb.SessionResponse]] = {}
        self.outbox: asyncio.Queue[pb.SessionRequest] = asyncio.Queue()
        self.abandoned: dict[int, tuple[str, Message]] = {}  # calls given up on, still in flight
        self.ended: grpc.aio.AioRpcError | None = None
        self.tasks: list[asyncio.Task[None]] = []


class WorkerSession:
    """Task calls multiplexed on one stream; pushed cancels go to `on_cancel(task_token)`."""

    def __init__(
        self, stub: WorkerServiceStub, *, on_cancel: Callable[[str], None], tracer: Tracer | None = None
    ) -> None:
        self._stub = stub
        self._on_cancel = on_cancel
        self._tracer = tracer
        self._ids = itertools.count(1)
        self._stream: _Stream | None = None

    async def call(self, field: str, request: Message, timeout: float | None) -> pb.SessionResponse:
        """Send `request` as the session call `field` and wait for its answer.

        With a tracer, each call but a poll is a client span, as a unary call is with the gRPC
        instrumentation, and carries its trace context to the server's span of the call.
        """
        if self._tracer is None or field == "poll_task":
            return await self._exchange(field, request, timeout, {})
        method = _METHODS[field]
        attributes = {"rpc.system": "grpc", "rpc.service": "cmo.api.v1.WorkerService", "rpc.method": method}
        with self._tracer.start_as_current_span(
            f"/cmo.api.v1.WorkerService/{method}", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            carrier: dict[str, str] = {}
            W3C.inject(carrier)
            try:
                response = await self._exchange(field, request, timeout, carrier)
            except grpc.aio.AioRpcError as err:
                span.set_attribute("rpc.grpc.status_code", err.code().value[0])
                span.set_status(Status(StatusCode.ERROR, f"{err.code().name}: {err.details()}"))
                raise
            span.set_attribute("rpc.grpc.status_code", grpc.StatusCode.OK.value[0])
            return response

    async def _exchange(
        self, field: str, request: Message, timeout: float | None, trace_context: dict[str, str]
    ) -> pb.SessionResponse:
        stream = self._current()
        call_id = next(self._ids)
        message = pb.SessionRequest(call_id=call_id, trace_context=trace_context)
        getattr(message, field).CopyFrom(request)
        future = asyncio.get_running_loop().create_future()
        stream.pending[call_id] = future
        stream.outbox.put_nowait(message)
        try:
            async with asyncio.timeout(timeout):
                response: pb.SessionResponse = await future
        except BaseException:
            # Timed out, or the caller was cancelled (a poll at shutdown), which cancels `future`
            # too unless its answer is in: stop the server's half, or give back what it handed out.
            if future.done() and not future.cancelled() and future.exception() is None:
                self._unwanted(field, request, future.result())
            elif stream.ended is None:
                stream.outbox.put_nowait(pb.SessionRequest(call_id=call_id, cancel=pb.CancelCall()))
                stream.abandoned[call_id] = (field, request)
            raise
        finally:
            stream.pending.pop(call_id, None)
        if response.HasField("error"):
            raise _rpc_error(_CODES.get(response.error.code, grpc.StatusCode.UNKNOWN), response.error.message)
        return response

    async def aclose(self) -> None:
        """End the stream (calls still in flight fail UNAVAILABLE)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.call.cancel()
            for task in stream.tasks:
                task.cancel()
            await asyncio.gather(*stream.tasks, return_exceptions=True)
            self._fail_pending(stream)

    # -- the stream -------------------------------------------------------------------------------

    def _current(self) -> _Stream:
        if self._stream is None or self._stream.ended is not None:
            # In a context of its own: the stream outlives the call (and the step) that opens it.
            fresh = contextvars.Context()
            stream = _Stream(fresh.run(self._stub.Session))
            stream.tasks = [
                asyncio.create_task(self._write(stream), name="cmo-session-writer", context=fresh),
                asyncio.create_task(self._read(stream), name="cmo-session-reader", context=fresh),
            ]
            self._stream = stream
        return self._stream

    async def _write(self, stream: _Stream) -> None:
        # The only writer: a write cancelled half-way would cancel the whole stream (grpc.aio).
        try:
            while True:
                await stream.call.write(await stream.outbox.get())
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self._end(stream, err)

    async def _read(self, stream: _Stream) -> None:
        try:
            while (response := await stream.call.read()) is not grpc.aio.EOF:
                assert isinstance(response, pb.SessionResponse)
                if response.call_id == 0:
                    if response.HasField("cancel_requested"):
                        self._on_cancel(response.cancel_requested.task_token)
                    continue
                future = stream.pending.get(response.call_id)
                if future is not None and not future.done():
                    future.set_result(response)
                elif (abandoned := stream.abandoned.pop(response.call_id, None)) is not None:
                    self._unwanted(*abandoned, response)
            self._end(stream, None)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self._end(stream, err)

    def _end(self, stream: _Stream, err: BaseException | None) -> None:
        """The stream is over: fail its pending calls and let the next call open a new one."""
        if stream.ended is not None:
            return
        if isinstance(err, grpc.aio.AioRpcError) and err.code() not in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.CANCELLED,
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.INTERNAL,
        ):
            stream.ended = err  # the server refused the stream itself (a malformed message)
        else:
            stream.ended = _rpc_error(grpc.StatusCode.UNAVAILABLE, _STREAM_LOST)
        logger.debug("worker session ended: %s", err or "closed by the server")
        stream.call.cancel()
        for task in stream.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._fail_pending(stream)

    @staticmethod
    def _fail_pending(stream: _Stream) -> None:
        error = stream.ended or _rpc_error(grpc.StatusCode.UNAVAILABLE, _STREAM_LOST)
        for future in stream.pending.values():
            if not future.done():
                future.set_exception(error)
        stream.pending.clear()

    def _unwanted(self, field: str, request: Message, response: pb.SessionResponse) -> None:
        """An answer that came as its caller gave up on it: give back the task it leases, if any."""
        task = response.poll_task.task if field == "poll_task" and response.poll_task.HasField("task") else None
        if task is None and field == "complete_task" and response.complete_task.HasField("next_task"):
            task = response.complete_task.next_task
        if task is not None and self._stream is not None and self._stream.ended is None:
            release = pb.FailTaskRequest(
                worker_id=getattr(request, "worker_id", ""), task_token=task.task_token, release=True
            )
            self._stream.outbox.put_nowait(pb.SessionRequest(call_id=next(self._ids), fail_task=release))


class _Method(Generic[Resp]):
    """A session call with a unary stub method's signature: `await method(request, timeout=...)`."""

    def __init__(self, session: WorkerSession, field: str, unary: Callable[..., Awaitable[Resp]]) -> None:
        self._session = session
        self._field = field
        self._unary = unary
        self._method = field  # for `call`'s debug log

    async def __call__(self, request: Message, *, timeout: float | None = None) -> Resp:
        if request.ByteSize() > MAX_SESSION_MESSAGE_BYTES:
            # Too large for the stream's sake: a message over the server's limit would end the
            # stream and fail every call on it; as a unary call it fails alone.
            return await self._unary(request, timeout=timeout)
        response = await self._session.call(self._field, request, timeout)
        result: Resp = getattr(response, self._field)
        return result


class SessionStub:
    """The task calls of a session under the unary stub's names, for the worker to call alike."""

    def __init__(self, session: WorkerSession, stub: WorkerServiceStub) -> None:
        self.PollTask = _Method(session, "poll_task", stub.PollTask)
        self.RecordActivity = _Method(session, "record_activity", stub.RecordActivity)
        self.HeartbeatTask = _Method(session, "heartbeat_task", stub.HeartbeatTask)
        self.CompleteTask = _Method(session, "complete_task", stub.CompleteTask)
        self.FailTask = _Method(session, "fail_task", stub.FailTask)
        self.SuspendTask = _Method(session, "suspend_task", stub.SuspendTask)


_CODES = {code.value[0]: code for code in grpc.StatusCode}
_METHODS = session_calls()
"""The session's calls and the unary methods they stand for (the names of their spans)."""


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)
