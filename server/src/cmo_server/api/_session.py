"""A worker session: the task calls multiplexed on one bidirectional stream.

Each call on the stream goes to the same servicer method as its unary RPC, so it is checked and
fenced exactly alike; only the framing differs. Calls run concurrently and are answered as they
finish. The session also remembers which runs' tasks it holds, to push a cancel at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from google.protobuf.message import Message
from opentelemetry.trace import Tracer

from cmo.api.sessions import session_calls
from cmo.api.v1 import common_pb2
from cmo.api.v1 import worker_service_pb2 as pb
from cmo_server.api._handlers import Refused
from cmo_server.api._status import status_for
from cmo_server.domain import Namespace
from cmo_server.telemetry import call_span

__all__ = ["SessionsByRun", "TaskCalls", "WorkerSession"]

logger = logging.getLogger(__name__)

MAX_CALLS_IN_FLIGHT = 10_000
"""Calls one session may have running at once (a worker runs one poll per free slot)."""

_RunKey = tuple[str, str, str]
"""(tenant, project, run_id) of a task the session holds."""

_FINISHING = frozenset({"complete_task", "fail_task", "suspend_task"})
"""Calls that end the attempt they name: the session no longer holds its task."""

_CALL_NAMES = session_calls()
"""The session's calls (fields of SessionRequest.call) and the unary RPCs they stand for."""


class TaskCalls(Protocol):
    """The servicer methods behind the task calls, the same ones the unary RPCs use."""

    async def poll_task(self, request: pb.PollTaskRequest) -> pb.PollTaskResponse: ...
    async def record_activity(self, request: pb.RecordActivityRequest) -> pb.RecordActivityResponse: ...
    async def heartbeat_task(self, request: pb.HeartbeatTaskRequest) -> pb.HeartbeatTaskResponse: ...
    async def complete_task(self, request: pb.CompleteTaskRequest) -> pb.CompleteTaskResponse: ...
    async def fail_task(self, request: pb.FailTaskRequest) -> pb.FailTaskResponse: ...
    async def suspend_task(self, request: pb.SuspendTaskRequest) -> pb.SuspendTaskResponse: ...
    async def release(self, task: common_pb2.Task, worker_id: str) -> None: ...


class SessionsByRun:
    """Which open session holds a task of which run, so that CancelRun reaches it at once."""

    def __init__(self) -> None:
        self._holders: dict[_RunKey, WorkerSession] = {}

    def hold(self, run: _RunKey, session: WorkerSession) -> None:
        self._holders[run] = session

    def drop(self, run: _RunKey, session: WorkerSession) -> None:
        if self._holders.get(run) is session:
            del self._holders[run]

    def cancel_requested(self, namespace: Namespace, run_id: str) -> None:
        """An engine listener: tell the session holding the run's task, if this server has it."""
        session = self._holders.get((namespace.tenant, namespace.project, run_id))
        if session is not None:
            session.push_cancel((namespace.tenant, namespace.project, run_id))


class WorkerSession:
    """One open Session stream: `serve` is its async generator of responses."""

    def __init__(self, calls: TaskCalls, sessions: SessionsByRun, tracer: Tracer | None = None) -> None:
        self._calls = calls
        self._tracer = tracer
        self._sessions = sessions
        self._handlers: dict[str, Callable[[Any], Awaitable[Message]]] = {
            field: getattr(calls, field) for field in _CALL_NAMES
        }
        self._running: dict[int, asyncio.Task[None]] = {}
        self._held: dict[str, tuple[_RunKey, str]] = {}  # task token -> its run, the worker holding it
        self._tokens: dict[_RunKey, str] = {}  # run -> the token held
        self._outbox: asyncio.Queue[pb.SessionResponse | _End] = asyncio.Queue()
        self._closed = False

    async def serve(self, requests: AsyncIterator[pb.SessionRequest | Refused]) -> AsyncIterator[pb.SessionResponse]:
        """Answer the stream's calls until the worker closes it (or it breaks)."""
        reader = asyncio.create_task(self._read(requests))
        try:
            while not isinstance(response := await self._outbox.get(), _End):
                yield response
            if response.error is not None:
                raise response.error
        finally:
            self._closed = True
            reader.cancel()
            for run in self._tokens:
                self._sessions.drop(run, self)
            running = list(self._running.values())
            for call in running:
                call.cancel()
            await asyncio.gather(reader, *running, return_exceptions=True)
            while not self._outbox.empty():  # answers never sent: give back the tasks in them
                if not isinstance(unsent := self._outbox.get_nowait(), _End):
                    self._give_back(unsent)

    async def _read(self, requests: AsyncIterator[pb.SessionRequest | Refused]) -> None:
        try:
            async for message in requests:
                if isinstance(message, Refused):
                    request = message.request
                    assert isinstance(request, pb.SessionRequest)
                    # Named as the unary call would name it: `worker_id`, not `complete_task.worker_id`.
                    reason = message.reason.removeprefix(f"{request.WhichOneof('call')}.")
                    self._refuse(request.call_id, grpc.StatusCode.INVALID_ARGUMENT, reason)
                else:
                    self._start(message)
            # The worker is done sending, not done listening: answer what is in flight, then end.
            while running := list(self._running.values()):
                await asyncio.gather(*running, return_exceptions=True)
        except asyncio.CancelledError:
            raise
        except BaseException as err:  # the stream was aborted (a malformed message)
            self._outbox.put_nowait(_End(err))
            return
        self._outbox.put_nowait(_End())

    def push_cancel(self, run: _RunKey) -> None:
        """Tell the worker that the run of a task it holds is being cancelled."""
        token = self._tokens.get(run)
        if token is not None and not self._closed:
            self._outbox.put_nowait(pb.SessionResponse(cancel_requested=pb.CancelRequested(task_token=token)))

    def _start(self, message: pb.SessionRequest) -> None:
        call_id = message.call_id
        field = message.WhichOneof("call")
        if field == "cancel":
            if (running := self._running.get(call_id)) is not None:
                running.cancel()
            return
        if field is None:
            self._refuse(
                call_id, grpc.StatusCode.INVALID_ARGUMENT, f"call: one of {', '.join(_CALL_NAMES)} is required"
            )
        elif call_id == 0:
            self._refuse(0, grpc.StatusCode.INVALID_ARGUMENT, "call_id: must be 1 or more")
        elif call_id in self._running:
            self._refuse(call_id, grpc.StatusCode.INVALID_ARGUMENT, f"call_id: {call_id} is in flight already")
        elif len(self._running) >= MAX_CALLS_IN_FLIGHT:
            self._refuse(
                call_id, grpc.StatusCode.RESOURCE_EXHAUSTED, f"at most {MAX_CALLS_IN_FLIGHT} calls may be in flight"
            )
        else:
            self._running[call_id] = asyncio.create_task(
                self._answer(call_id, field, getattr(message, field), message.trace_context)
            )

    async def _answer(self, call_id: int, field: str, request: Any, trace_context: Mapping[str, str]) -> None:
        try:
            if field in _FINISHING:
                self._unhold(request.task_token)
            with call_span(self._tracer if field != "poll_task" else None, _CALL_NAMES[field], trace_context) as span:
                try:
                    result = await self._handlers[field](request)
                except asyncio.CancelledError:
                    if self._closed:
                        raise
                    self._refuse(call_id, grpc.StatusCode.CANCELLED, "cancelled by the worker")
                    return
                except Exception as err:
                    code, message = status_for(err, _CALL_NAMES[field])
                    if span is not None:
                        span.set_attribute("rpc.grpc.status_code", code.value[0])
                    self._refuse(call_id, code, message)
                    return
                if span is not None:
                    span.set_attribute("rpc.grpc.status_code", grpc.StatusCode.OK.value[0])
        finally:
            self._running.pop(call_id, None)
        response = pb.SessionResponse(call_id=call_id)
        getattr(response, field).CopyFrom(result)
        if (given := _task_given(response)) is not None:
            self._hold(given, request.worker_id)
        if self._closed:
            self._give_back(response)
        else:
            self._outbox.put_nowait(response)

    def _give_back(self, response: pb.SessionResponse) -> None:
        """A response the worker will never read: release the task it leases now, not when its lease lapses."""
        given = _task_given(response)
        if given is None or (held := self._held.get(given.task_token)) is None:
            return
        self._unhold(given.task_token)
        task = asyncio.ensure_future(self._calls.release(given, held[1]))
        _detached.add(task)  # not cancelled with the session: the release finishes on its own
        task.add_done_callback(_detached.discard)
        task.add_done_callback(_log_failure)

    def _hold(self, task: common_pb2.Task, worker_id: str) -> None:
        run = (task.namespace.tenant, task.namespace.project, task.run_id)
        self._held[task.task_token] = (run, worker_id)
        self._tokens[run] = task.task_token
        self._sessions.hold(run, self)

    def _unhold(self, token: str) -> None:
        run, _ = self._held.pop(token, (None, ""))
        if run is not None and self._tokens.get(run) == token:
            del self._tokens[run]
            self._sessions.drop(run, self)

    def _refuse(self, call_id: int, code: grpc.StatusCode, message: str) -> None:
        if not self._closed:
            self._outbox.put_nowait(
                pb.SessionResponse(call_id=call_id, error=pb.CallError(code=code.value[0], message=message))
            )


@dataclass(frozen=True, slots=True)
class _End:
    """The last item of a session's outbox: the requests ended (or broke with `error`)."""

    error: BaseException | None = None


_detached: set[asyncio.Future[Any]] = set()
"""Work a closing session leaves running: held here so it is not collected half-way."""


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and (err := task.exception()) is not None:
        logger.error("session work failed", exc_info=err)


def _task_given(response: pb.SessionResponse) -> common_pb2.Task | None:
    """The task an answer leases to the worker: a poll's, or a checkpoint's eager next task."""
    field = response.WhichOneof("result")
    if field == "poll_task" and response.poll_task.HasField("task"):
        return response.poll_task.task
    if field == "complete_task" and response.complete_task.HasField("next_task"):
        return response.complete_task.next_task
    return None
