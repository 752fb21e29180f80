"""WorkerService: decode, call the engine, encode. No rules live here."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import trace
from opentelemetry.trace import TracerProvider

from cmo.api.v1 import common_pb2
from cmo.api.v1 import worker_service_pb2 as pb
from cmo_server.api._convert import (
    activity_from_proto,
    activity_to_proto,
    artifact_to_proto,
    failure_from_proto,
    graph_from_proto,
    graph_to_proto,
    task_to_proto,
    wait_from_proto,
)
from cmo_server.api._handlers import Refused, answers_refusals
from cmo_server.api._namespace import namespace_of
from cmo_server.api._session import SessionsByRun, WorkerSession
from cmo_server.api._status import Handler, Req, Resp, rpc
from cmo_server.api._task_token import TaskTokens
from cmo_server.api._validate import check_id, check_range, duration_or, timestamp_or_now
from cmo_server.artifacts import Artifacts, check_media_type, parse_digest
from cmo_server.auth import lease_owner
from cmo_server.domain import ActivityRecord, Checkpoint, Failure, TaskKey, TaskRef
from cmo_server.engine import Engine
from cmo_server.errors import CmoServerError, InvalidArgument

__all__ = ["WorkerServicer"]

MAX_INT = 2**31 - 1
MAX_QUEUES = 100
MAX_GRAPHS = 1000
MAX_RIDING_ACTIVITIES = 1000
MAX_PAGE = 1000
MAX_WAIT = timedelta(days=3650)
"""Longest timer or signal timeout: ten years, well inside what a timestamp holds."""
ARTIFACT_CHUNK_BYTES = 1024 * 1024
"""GetArtifact's chunk size: well under any message limit, few messages for a large artifact."""


def _unary(name: str, call: Callable[[WorkerServicer, Req], Awaitable[Resp]]) -> Handler[WorkerServicer, Req, Resp]:
    """The unary RPC `name` of a task call the session also carries."""

    async def method(self: WorkerServicer, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        return await call(self, request)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = "See the proto."
    return rpc(method)


_TaskCall = (
    pb.HeartbeatTaskRequest
    | pb.CompleteTaskRequest
    | pb.FailTaskRequest
    | pb.RecordActivityRequest
    | pb.SuspendTaskRequest
)
"""The task calls: each names its task by token and its worker by id."""


class WorkerServicer:
    """What workers call."""

    def __init__(self, engine: Engine, *, artifacts: Artifacts, tracer_provider: TracerProvider | None = None) -> None:
        self._engine = engine
        self._tracer = trace.get_tracer("cmo-server", tracer_provider=tracer_provider) if tracer_provider else None
        self._artifacts = artifacts
        self._tokens = TaskTokens()
        self._sessions = SessionsByRun()
        engine.on_cancel_requested(self._sessions.cancel_requested)

    def _task_ref(self, request: _TaskCall) -> TaskRef:
        return self._tokens.decode("task_token", request.task_token)

    def _task_key(self, request: _TaskCall) -> TaskKey:
        """The fence of a task call: the attempt its token names and the worker that sends it."""
        return self._task_ref(request).key(lease_owner(check_id("worker_id", request.worker_id)))

    @rpc
    async def RegisterGraph(
        self, request: pb.RegisterGraphRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterGraphResponse:
        """See the proto."""
        if not request.HasField("graph"):
            raise InvalidArgument("graph", "is required")
        created = await self._engine.register_graph(graph_from_proto(request.graph, namespace_of(request)))
        return pb.RegisterGraphResponse(created=created)

    @rpc
    async def GetGraph(self, request: pb.GetGraphRequest, context: grpc.aio.ServicerContext) -> pb.GetGraphResponse:
        """See the proto."""
        graph = await self._engine.graph(
            namespace_of(request),
            check_id("graph_id", request.graph_id),
            check_range("version", request.version, 0, MAX_INT),
        )
        return pb.GetGraphResponse(graph=graph_to_proto(graph))

    @rpc
    async def ListGraphs(
        self, request: pb.ListGraphsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListGraphsResponse:
        """See the proto."""
        graphs, token = await self._engine.list_graphs(
            namespace_of(request),
            graph_id=check_id("graph_id", request.graph_id, required=False),
            limit=check_range("page_size", request.page_size, 0, MAX_PAGE) or 100,
            page_token=request.page_token,
        )
        return pb.ListGraphsResponse(graphs=[graph_to_proto(g) for g in graphs], next_page_token=token)

    async def poll_task(self, request: pb.PollTaskRequest) -> pb.PollTaskResponse:
        """PollTask: see the proto."""
        worker_id = check_id("worker_id", request.worker_id)
        if not request.task_queues or len(request.task_queues) > MAX_QUEUES:
            raise InvalidArgument("task_queues", f"must name 1 to {MAX_QUEUES} queues")
        queues = [check_id(f"task_queues[{i}]", q) for i, q in enumerate(request.task_queues)]
        if not request.graphs or len(request.graphs) > MAX_GRAPHS:
            raise InvalidArgument("graphs", f"must name 1 to {MAX_GRAPHS} graph versions")
        graphs = [
            (check_id(f"graphs[{i}].graph_id", g.graph_id), check_range(f"graphs[{i}].version", g.version, 1, MAX_INT))
            for i, g in enumerate(request.graphs)
        ]
        limits = self._engine.limits
        wait = duration_or(
            "wait", request.wait, request.HasField("wait"), limits.default_poll_wait, limits.max_poll_wait
        )
        task = await self._engine.poll_task(
            namespace_of(request),
            worker_id=worker_id,
            lease_owner=lease_owner(worker_id),
            task_queues=queues,
            graphs=graphs,
            wait=wait.total_seconds(),
        )
        if task is None:
            return pb.PollTaskResponse()
        return pb.PollTaskResponse(task=task_to_proto(task, limits.task_lease, self._tokens))

    async def record_activity(self, request: pb.RecordActivityRequest) -> pb.RecordActivityResponse:
        """RecordActivity: see the proto."""
        key = self._task_key(request)
        if not request.HasField("activity"):
            raise InvalidArgument("activity", "is required")
        stored = await self._engine.record_activity(key, activity_from_proto(request.activity, key.attempt))
        return pb.RecordActivityResponse(activity=activity_to_proto(stored))

    async def heartbeat_task(self, request: pb.HeartbeatTaskRequest) -> pb.HeartbeatTaskResponse:
        """HeartbeatTask: see the proto."""
        expires, cancel_requested = await self._engine.heartbeat(self._task_key(request))
        ts = Timestamp()
        ts.FromDatetime(expires)
        return pb.HeartbeatTaskResponse(lease_expires_at=ts, cancel_requested=cancel_requested)

    async def complete_task(self, request: pb.CompleteTaskRequest) -> pb.CompleteTaskResponse:
        """CompleteTask: see the proto."""
        ref = self._task_ref(request)
        done = Checkpoint(
            key=ref.key(lease_owner(check_id("worker_id", request.worker_id))),
            graph_id=ref.graph_id,
            graph_version=ref.graph_version,
            node_id=ref.node_id,
            state=request.state,
            output=request.output,
            next_key=check_id("next_key", request.next_key),
            started_at=timestamp_or_now("started_at", request.started_at, request.HasField("started_at")),
            eager_task_queues=_eager_queues(request.eager_task_queues),
            activities=_activities(request, ref.attempt),
        )
        outcome = await self._engine.complete_task(done)
        response = pb.CompleteTaskResponse(run_status=int(outcome.run_status))  # type: ignore[arg-type]
        if outcome.next_task is not None:
            response.next_task.CopyFrom(task_to_proto(outcome.next_task, self._engine.limits.task_lease, self._tokens))
        return response

    async def fail_task(self, request: pb.FailTaskRequest) -> pb.FailTaskResponse:
        """FailTask: see the proto."""
        ref = self._task_ref(request)
        worker_id = check_id("worker_id", request.worker_id)
        if request.release and request.cancelled:
            raise InvalidArgument("cancelled", "a task cannot be released and cancelled at once")
        if request.HasField("failure"):
            failure = failure_from_proto(request.failure)
        elif request.release or request.cancelled:
            failure = Failure("released" if request.release else "cancelled")
        else:
            raise InvalidArgument("failure", "is required unless release or cancelled is set")
        outcome = await self._engine.fail_task(
            ref,
            worker_id=lease_owner(worker_id),
            failure=failure,
            release=request.release,
            cancelled=request.cancelled,
            activities=_activities(request, ref.attempt),
        )
        response = pb.FailTaskResponse(will_retry=outcome.will_retry, run_status=int(outcome.run_status))  # type: ignore[arg-type]
        response.retry_after.FromTimedelta(outcome.retry_after)
        return response

    async def suspend_task(self, request: pb.SuspendTaskRequest) -> pb.SuspendTaskResponse:
        """SuspendTask: see the proto."""
        key = self._task_key(request)
        if not request.HasField("wait"):
            raise InvalidArgument("wait", "is required")
        wait = wait_from_proto(request.wait, max_duration=MAX_WAIT)
        outcome = await self._engine.suspend_task(key, wait, activities=_activities(request, key.attempt))
        return pb.SuspendTaskResponse(resumed=outcome.resumed)

    PollTask = _unary("PollTask", poll_task)
    RecordActivity = _unary("RecordActivity", record_activity)
    HeartbeatTask = _unary("HeartbeatTask", heartbeat_task)
    CompleteTask = _unary("CompleteTask", complete_task)
    FailTask = _unary("FailTask", fail_task)
    SuspendTask = _unary("SuspendTask", suspend_task)

    @answers_refusals
    async def Session(
        self, requests: AsyncIterator[pb.SessionRequest | Refused], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SessionResponse]:
        """See the proto."""
        async for response in WorkerSession(self, self._sessions, self._tracer).serve(requests):
            yield response

    async def release(self, task: common_pb2.Task, worker_id: str) -> None:
        """Give back a task whose worker never got it (its session closed first)."""
        with contextlib.suppress(CmoServerError):  # taken meanwhile, or its run ended: nothing to give back
            await self._engine.fail_task(
                self._tokens.decode("task_token", task.task_token),
                worker_id=lease_owner(worker_id),
                failure=Failure("released"),
                release=True,
                cancelled=False,
                activities=(),
            )

    @rpc
    async def PutArtifact(
        self, requests: AsyncIterator[pb.PutArtifactRequest], context: grpc.aio.ServicerContext
    ) -> pb.PutArtifactResponse:
        """See the proto."""
        first = await anext(requests, None)
        if first is None or not first.run_id:
            raise InvalidArgument("run_id", "must be set on the first message")
        namespace = namespace_of(first)
        run_id = check_id("run_id", first.run_id)
        media_type = check_media_type("media_type", first.media_type)
        await self._artifacts.check_run(namespace, run_id)  # before the content is sent, not after

        async def chunks() -> AsyncIterator[bytes]:
            yield first.chunk
            async for request in requests:
                if request.run_id not in ("", run_id):
                    raise InvalidArgument("run_id", "names another run than the first message did")
                if request.HasField("namespace") and namespace_of(request) != namespace:
                    raise InvalidArgument("namespace", "names another namespace than the first message did")
                yield request.chunk

        artifact = await self._artifacts.put(namespace, run_id, media_type, chunks())
        return pb.PutArtifactResponse(artifact=artifact_to_proto(artifact))

    async def GetArtifact(
        self, request: pb.GetArtifactRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GetArtifactResponse]:
        """See the proto."""
        content = await self._read_artifact(request, context)
        for start in range(0, max(len(content), 1), ARTIFACT_CHUNK_BYTES):
            yield pb.GetArtifactResponse(chunk=content[start : start + ARTIFACT_CHUNK_BYTES])

    @rpc
    async def _read_artifact(self, request: pb.GetArtifactRequest, context: grpc.aio.ServicerContext) -> bytes:
        # Everything that can fail happens here, before the first chunk, under `rpc`'s statuses.
        _, content = await self._artifacts.get(namespace_of(request), parse_digest("digest", request.digest))
        return content


def _eager_queues(queues: Sequence[str]) -> frozenset[str]:
    if len(queues) > MAX_QUEUES:
        raise InvalidArgument("eager_task_queues", f"may name at most {MAX_QUEUES} queues")
    return frozenset(check_id(f"eager_task_queues[{i}]", q) for i, q in enumerate(queues))


def _activities(
    request: pb.CompleteTaskRequest | pb.FailTaskRequest | pb.SuspendTaskRequest, attempt: int
) -> tuple[ActivityRecord, ...]:
    if len(request.activities) > MAX_RIDING_ACTIVITIES:
        raise InvalidArgument("activities", f"at most {MAX_RIDING_ACTIVITIES} records may ride on one request")
    seqs: set[int] = set()
    for i, activity in enumerate(request.activities):
        # Two records of one seq in one request are a worker's bug, and would have one statement
        # write a row twice.
        if activity.seq in seqs:
            raise InvalidArgument(f"activities[{i}].seq", f"{activity.seq} is sent twice")
        seqs.add(activity.seq)
    return tuple(activity_from_proto(a, attempt, f"activities[{i}]") for i, a in enumerate(request.activities))
