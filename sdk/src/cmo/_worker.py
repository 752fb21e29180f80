"""The worker: long-poll for node tasks, run them, heartbeat, checkpoint, shut down gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import socket
import traceback
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from cmo._activity import ActivityRunner, Suspend, replayed_records, wire_failure
from cmo._client import Client
from cmo._convert import duration
from cmo._converter import from_json, to_json
from cmo._graph import END, Graph, Node, NodeContext, NodeResult
from cmo._http import close_http_client
from cmo._rpc import call
from cmo._session import SessionStub, WorkerSession
from cmo._telemetry import provider_configured, step_span, tracer
from cmo._version import __version__
from cmo.api.v1 import common_pb2
from cmo.api.v1 import worker_service_pb2 as pb
from cmo.api.v1.worker_service_pb2_grpc import WorkerServiceStub
from cmo.errors import ApplicationError, RpcError, RunCancelledError
from cmo.registry import AgentPresence
from cmo.serialization import canonical_json, parse_json

if TYPE_CHECKING:
    from cmo.a2a.invoke import Messaging

__all__ = ["Worker"]

logger = logging.getLogger(__name__)

CALL_TIMEOUT = 30.0
# A checkpoint may wait this long for a restarting server: CompleteTask is idempotent.
COMPLETE_RETRY_FOR = 120.0


class _LeaseLost(BaseException):
    """Another attempt owns the task now; this one must stop and write nothing.

    A BaseException, so node code catching Exception around an activity cannot swallow it.
    """


class Worker:
    """Runs the nodes of some graphs: polls their task queues with `concurrency` slots.

    `await worker.run()` serves until `shutdown()` is called (say from a SIGTERM handler) or the
    call is cancelled (as `asyncio.run` does at a first Ctrl-C). In-flight tasks then get
    `shutdown_grace` seconds to finish; the rest are handed back to the server. A second
    `shutdown()` (or cancellation) stops it at once. A worker started before its server waits for
    it, logging that it waits.

    Example:
        ```python
        async with await cmo.Client.connect("127.0.0.1:7233") as client:
            await cmo.Worker(client, [triage], concurrency=20).run()
        ```
    """

    def __init__(
        self,
        client: Client,
        graphs: Sequence[Graph[Any]],
        *,
        task_queues: Sequence[str] | None = None,
        concurrency: int = 10,
        worker_id: str | None = None,
        poll_wait: float = 20.0,
        shutdown_grace: float = 30.0,
        eager: bool = True,
        session: bool = True,
        messaging: Messaging | None = None,
        tenant: str | None = None,
        project: str | None = None,
        register: bool = True,
    ) -> None:
        """Create a worker.

        Args:
            client: A connected client.
            graphs: The graph versions this worker runs.
            task_queues: Queues to poll; every queue the graphs' nodes use by default.
            concurrency: Tasks run at once (one poller per slot).
            worker_id: Name in leases and logs; host-pid-random by default.
            poll_wait: Long-poll length in seconds.
            shutdown_grace: Seconds in-flight tasks get to finish after `shutdown()`.
            eager: Take the run's next task in the reply to a checkpoint, saving a round trip.
            messaging: How its steps talk to agents (`ctx.invoke_specialist`): a transport and
                the signing keys, `cmo.a2a.invoke.Messaging(transport, keys)`.
            session: Carry the task calls on one stream to the server (a worker session), which
                costs far less per step than a unary call each; False makes them unary calls,
                for proxies that do not pass bidirectional streams.
            tenant: The namespace whose queues it polls and graphs it registers; the client's
                by default.
            project: See `tenant`.
            register: Keep the worker in the server's agent registry while it runs (kind
                "worker", capabilities `graph:<id>@<version>` and `queue:<name>`, its load the
                share of busy slots), so that operators see it, its queues and its last poll.
        """
        if not graphs:
            raise ValueError("a worker needs at least one graph")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if tenant is not None or project is not None:
            client = client.in_namespace(tenant or client.tenant, project or client.project)
        self._client = client
        self._tracer = tracer(client.tracer_provider)
        self._session = (
            WorkerSession(
                client.worker_stub,
                on_cancel=self._cancel_pushed,
                tracer=self._tracer if provider_configured(client.tracer_provider) else None,
            )
            if session
            else None
        )
        self._stub: WorkerServiceStub | SessionStub = (
            SessionStub(self._session, client.worker_stub) if self._session is not None else client.worker_stub
        )
        self._cancellable: dict[str, ActivityRunner] = {}  # task token -> its running step
        self._messaging = messaging
        self._graphs = {(g.graph_id, g.version): g for g in graphs}
        self.task_queues = sorted(task_queues or {q for g in graphs for q in g.task_queues})
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._concurrency = concurrency
        self._poll_wait = poll_wait
        self._shutdown_grace = shutdown_grace
        self._eager = eager
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        """Set by a second `shutdown()`: hand the in-flight tasks back now."""
        self._polls: set[asyncio.Task[Any]] = set()
        self._nodes: set[asyncio.Task[Any]] = set()
        self._releasing = False
        self.presence = (
            AgentPresence(
                client.registry,
                _agent_id(self.worker_id),
                kind="worker",
                tenant=client.tenant,
                project=client.project,
                version=__version__,
                capabilities=[
                    *(f"graph:{g}@{v}" for g, v in sorted(self._graphs)),
                    *(f"queue:{q}" for q in self.task_queues),
                ],
                metadata={
                    "worker_id": self.worker_id[:1024],
                    "concurrency": str(concurrency),
                    "sdk": "python",
                    "host": socket.gethostname()[:1024],
                },
                load=lambda: len(self._nodes) / self._concurrency,
            )
            if register
            else None
        )
        """How the worker is kept in the agent registry; None with `register=False`."""

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Register the graphs and serve until `shutdown()` or cancellation; returns when drained."""
        serving = asyncio.create_task(self._serve(), name=f"cmo-worker-{self.worker_id}")
        try:
            await asyncio.shield(serving)
        except asyncio.CancelledError:
            if serving.done():
                raise
            self.shutdown()  # drain as shutdown() would; cancelled again, `serving` is cancelled and stops at once
            await serving
            raise

    async def _register(self) -> None:
        # Waits for a server that is not up yet (or went away since the client connected), saying so.
        await self._client._wait_connected()
        for graph in self._graphs.values():
            await self._client.register_graph(graph)
        if self.presence is not None:
            try:
                await self.presence.start()
            except RpcError as err:  # a server without a registry still runs the worker
                logger.warning("worker %s is not in the agent registry: %s", self.worker_id, err)
                self.presence = None

    async def _serve(self) -> None:
        registering = asyncio.create_task(self._register())
        stopping = asyncio.create_task(self._stopping.wait())
        await asyncio.wait([registering, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not registering.done():  # told to stop while it waited for its server
            registering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await registering
            if self.presence is not None:
                await self.presence.aclose("the worker stopped")
            logger.info("worker %s stopped before it started", self.worker_id, extra={"worker_id": self.worker_id})
            return
        registering.result()
        logger.info(
            "worker %s started: %s on task queue%s %s, %d slots",
            self.worker_id,
            ", ".join(f"{g}@{v}" for g, v in sorted(self._graphs)),
            "s" if len(self.task_queues) > 1 else "",
            ", ".join(self.task_queues),
            self._concurrency,
            extra={"worker_id": self.worker_id},
        )
        try:
            async with asyncio.TaskGroup() as group:
                for slot in range(self._concurrency):
                    group.create_task(self._slot(), name=f"cmo-slot-{slot}")
                group.create_task(self._drain_on_shutdown())
        finally:
            if self.presence is not None:
                await self.presence.aclose("the worker stopped")
            if self._session is not None:
                await self._session.aclose()
            await close_http_client()
        logger.info("worker %s stopped", self.worker_id, extra={"worker_id": self.worker_id})

    def shutdown(self) -> None:
        """Stop polling; in-flight tasks finish within the grace period or are handed back.

        Called again, it hands them back at once.
        """
        log = {"worker_id": self.worker_id}
        if not self._stopping.is_set():
            self._stopping.set()
            logger.info(
                "worker %s draining: no new tasks; %d in flight get %gs to finish (stop it again, e.g. a second "
                "Ctrl-C, to hand them back at once)",
                self.worker_id,
                len(self._nodes),
                self._shutdown_grace,
                extra=log,
            )
        elif not self._hurry.is_set():
            self._hurry.set()
            logger.info(
                "worker %s stopping at once: handing %d task(s) back", self.worker_id, len(self._nodes), extra=log
            )

    def _cancel_pushed(self, task_token: str) -> None:
        """The server says the run of a task running here is being cancelled."""
        activities = self._cancellable.get(task_token)
        if activities is not None:
            activities.request_cancel()

    async def _drain_on_shutdown(self) -> None:
        await self._stopping.wait()
        if self.presence is not None:
            # Deregistering first ends this worker's polls on the server, even one whose
            # cancellation would miss it, so no task is handed to a poll nobody reads.
            await self.presence.aclose("the worker stopped")
        for poll in list(self._polls):
            poll.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._shutdown_grace
        hurry = asyncio.create_task(self._hurry.wait())
        try:
            while self._nodes and not self._hurry.is_set() and (left := deadline - loop.time()) > 0:
                await asyncio.wait([*self._nodes, hurry], timeout=left, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hurry.cancel()
        if pending := list(self._nodes):
            if not self._hurry.is_set():
                logger.info("grace period over: handing %d task(s) back", len(pending))
            self._releasing = True
            for node in pending:
                node.cancel()

    async def _slot(self) -> None:
        while not self._stopping.is_set():
            task = await self._poll()
            while task is not None:
                task = await self._traced(task)

    async def _poll(self) -> common_pb2.Task | None:
        graphs = [common_pb2.GraphRef(graph_id=g, version=v) for g, v in self._graphs]
        request = pb.PollTaskRequest(
            worker_id=self.worker_id,
            task_queues=self.task_queues,
            graphs=graphs,
            wait=duration(self._poll_wait),
            namespace=self._client.namespace,
        )
        poll = asyncio.create_task(
            call(self._stub.PollTask, request, timeout=self._poll_wait + CALL_TIMEOUT, retry_for=float("inf"))
        )
        self._polls.add(poll)
        try:
            await asyncio.wait([poll])
        finally:
            self._polls.discard(poll)
        if poll.cancelled():
            return None
        try:
            response = poll.result()
        except RpcError as err:
            logger.warning("poll failed: %s", err)
            await asyncio.sleep(1.0)
            return None
        return response.task if response.HasField("task") else None

    # -- one task ---------------------------------------------------------------------------------

    async def _traced(self, task: common_pb2.Task) -> common_pb2.Task | None:
        """`_execute` in a `cmo.step` span under the run's trace context (its node and calls inherit it)."""
        with step_span(self._tracer, task, worker_id=self.worker_id):
            return await self._execute(task)

    async def _execute(self, task: common_pb2.Task) -> common_pb2.Task | None:
        """Run one task to its checkpoint; returns the eagerly dispatched next task, if any."""
        log = {"run_id": task.run_id, "step_index": task.step_index, "attempt": task.attempt}
        graph = self._graphs.get((task.graph_id, task.graph_version))
        node = graph.nodes.get(task.node_id) if graph is not None else None
        if graph is None or node is None:
            await self._fail(task, ApplicationError(f"worker has no node {task.node_id!r}", non_retryable=True))
            return None
        started = datetime.now(UTC)
        activities = ActivityRunner(
            namespace=f"{task.namespace.tenant}/{task.namespace.project}",
            run_id=task.run_id,
            step_index=task.step_index,
            recorded=replayed_records(task.activities, attempt=task.attempt),
            record=functools.partial(self._record_activity, task),
            tracer=self._tracer,
        )
        if task.cancel_requested:
            if not task.activities:  # nothing started in this step: nothing to wind up
                await self._fail(task, RunCancelledError(""))
                return None
            activities.request_cancel()
        self._cancellable[task.task_token] = activities
        try:
            result = await self._run_node(task, graph, node, activities)
            state, output = self._encode(node, result)
        except Suspend as suspend:
            wait = suspend.wait
            trace.get_current_span().add_event(
                "cmo.suspend", {"cmo.wait.kind": wait.kind, "cmo.wait.name": wait.name, "cmo.wait.seq": wait.seq}
            )
            await self._suspend(task, wait, activities.unconfirmed())
            return None
        except _LeaseLost:
            trace.get_current_span().add_event("cmo.lease_lost")
            logger.warning("lease of step %s of run %s lost; dropping it", task.step_index, task.run_id, extra=log)
            return None
        except asyncio.CancelledError:
            if not self._releasing:
                raise
            trace.get_current_span().add_event("cmo.released")
            await self._release(task)
            return None
        except Exception as err:
            await self._fail(task, err, activities.unconfirmed())
            return None
        finally:
            del self._cancellable[task.task_token]
            activities.close()  # what was not confirmed rides on the request below (or above)
        return await self._complete(task, node, state, output, result.next, started, activities.unconfirmed())

    async def _run_node(
        self, task: common_pb2.Task, graph: Graph[Any], node: Node, activities: ActivityRunner
    ) -> NodeResult[Any]:
        ctx = NodeContext(
            tenant=task.namespace.tenant or "default",
            project=task.namespace.project or "default",
            run_id=task.run_id,
            step_index=task.step_index,
            attempt=task.attempt,
            node_id=task.node_id,
            graph_id=task.graph_id,
            graph_version=task.graph_version,
            logical_time=task.logical_time.ToDatetime(tzinfo=UTC),
            seed=task.seed,
            activities=activities,
            worker_stub=self._client.worker_stub,
            messaging=self._messaging,
            registry=self._client.registry,
        )
        state: Any = from_json(parse_json(task.state), graph.state_type)
        running = asyncio.create_task(node.run(state, ctx), name=f"cmo-node-{task.run_id}-{task.step_index}")
        self._nodes.add(running)
        lost = asyncio.Event()
        interval = max(task.lease_duration.ToTimedelta().total_seconds() / 3, 0.05)
        # Most nodes finish long before their first heartbeat is due: a timer costs far less per
        # step than a heartbeat task started and cancelled every time (3-7% of worker CPU).
        beats: list[asyncio.Task[None]] = []
        timer = asyncio.get_running_loop().call_later(
            interval,
            lambda: beats.append(asyncio.create_task(self._heartbeat(task, interval, running, lost, activities))),
        )
        try:
            return await running
        except asyncio.CancelledError:
            if lost.is_set():
                raise _LeaseLost() from None
            if not running.done():
                running.cancel()
            raise
        finally:
            timer.cancel()
            for beat in beats:
                beat.cancel()
            self._nodes.discard(running)

    async def _heartbeat(
        self,
        task: common_pb2.Task,
        interval: float,
        running: asyncio.Task[Any],
        lost: asyncio.Event,
        activities: ActivityRunner,
    ) -> None:
        request = pb.HeartbeatTaskRequest(worker_id=self.worker_id, task_token=task.task_token)
        while True:
            try:
                response = await self._stub.HeartbeatTask(request, timeout=interval)
                if response.cancel_requested:
                    activities.request_cancel()
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    lost.set()
                    running.cancel()
                    return
                logger.debug(
                    "heartbeat failed (%s); trying again",
                    err.code().name,
                    extra={"run_id": task.run_id, "step_index": task.step_index, "attempt": task.attempt},
                )
            await asyncio.sleep(interval)

    async def _record_activity(self, task: common_pb2.Task, activity: common_pb2.Activity) -> common_pb2.Activity:
        request = pb.RecordActivityRequest(worker_id=self.worker_id, task_token=task.task_token, activity=activity)
        try:
            response = await call(
                self._stub.RecordActivity, request, timeout=CALL_TIMEOUT, retry_for=COMPLETE_RETRY_FOR
            )
        except RpcError as err:
            if err.code == "FAILED_PRECONDITION":
                raise _LeaseLost() from None
            raise
        stored: common_pb2.Activity = response.activity
        return stored

    def _encode(self, node: Node, result: NodeResult[Any]) -> tuple[bytes, bytes]:
        if result.next != END and result.next not in node.edges:
            raise ApplicationError(
                f"node {node.name!r} returned next={result.next!r}, which is not one of its edges "
                f"{sorted(node.edges)} nor END",
                type="GraphError",
                non_retryable=True,
            )
        try:
            state = canonical_json(to_json(result.state))
            output = canonical_json(to_json(result.output)) if result.output is not None else b""
        except (TypeError, ValueError) as err:
            raise ApplicationError(
                f"node {node.name!r} returned a state that is not JSON: {err}", type="TypeError", non_retryable=True
            ) from err
        return state, output

    async def _complete(
        self,
        task: common_pb2.Task,
        node: Node,
        state: bytes,
        output: bytes,
        next_key: str,
        started: datetime,
        activities: list[common_pb2.Activity],
    ) -> common_pb2.Task | None:
        request = pb.CompleteTaskRequest(
            worker_id=self.worker_id,
            task_token=task.task_token,
            state=state,
            output=output,
            next_key=next_key,
            eager_task_queues=self.task_queues if self._eager and not self._stopping.is_set() else [],
            activities=activities,
        )
        request.started_at.FromDatetime(started)
        log = {"run_id": task.run_id, "step_index": task.step_index, "attempt": task.attempt}
        try:
            response = await call(self._stub.CompleteTask, request, timeout=CALL_TIMEOUT, retry_for=COMPLETE_RETRY_FOR)
        except RpcError as err:
            if err.code == "FAILED_PRECONDITION":
                logger.warning(
                    "checkpoint of step %s of run %s refused: %s", task.step_index, task.run_id, err.message, extra=log
                )
            elif err.code in ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"):
                await self._fail(task, ApplicationError(err.message, type=err.code, non_retryable=True))
            else:
                logger.error("checkpoint of step %s of run %s failed: %s", task.step_index, task.run_id, err, extra=log)
            return None
        return response.next_task if response.HasField("next_task") else None

    async def _fail(
        self, task: common_pb2.Task, err: BaseException, activities: list[common_pb2.Activity] | None = None
    ) -> None:
        if isinstance(err, ApplicationError):
            kind, non_retryable = err.type, err.non_retryable
        else:
            kind, non_retryable = type(err).__name__, bool(getattr(err, "non_retryable", False))
        logger.info(
            "step %s of run %s failed (attempt %s): %s: %s",
            task.step_index,
            task.run_id,
            task.attempt,
            kind,
            err,
            extra={"run_id": task.run_id, "step_index": task.step_index, "attempt": task.attempt},
        )
        span = trace.get_current_span()
        span.set_status(StatusCode.ERROR, f"{kind}: {err}")
        span.record_exception(err)
        failure = wire_failure(
            str(err) or kind,
            kind,
            non_retryable=non_retryable,
            details="".join(traceback.format_exception(err))[-16000:],
        )
        # RunCancelledError comes only from ctx once CancelRun was called: say so, and the run ends
        # CANCELLED (as it does for any failure of a run being cancelled).
        cancelled = isinstance(err, RunCancelledError)
        await self._report_failure(task, failure, release=False, cancelled=cancelled, activities=activities or [])

    async def _suspend(
        self, task: common_pb2.Task, wait: pb.WaitRequest, activities: list[common_pb2.Activity]
    ) -> None:
        """End the attempt while its node waits; the server offers the step again once the wait is over."""
        request = pb.SuspendTaskRequest(
            worker_id=self.worker_id,
            task_token=task.task_token,
            wait=wait,
            activities=activities,
        )
        log = {"run_id": task.run_id, "step_index": task.step_index, "attempt": task.attempt}
        try:
            await call(self._stub.SuspendTask, request, timeout=CALL_TIMEOUT, retry_for=COMPLETE_RETRY_FOR)
        except RpcError as err:
            if err.code == "FAILED_PRECONDITION":
                logger.warning(
                    "suspending step %s of run %s refused: %s", task.step_index, task.run_id, err.message, extra=log
                )
            elif err.code in ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"):
                await self._fail(task, ApplicationError(err.message, type=err.code, non_retryable=True), activities)
            else:
                logger.error("suspending step %s of run %s failed: %s", task.step_index, task.run_id, err, extra=log)
            return
        logger.debug("step %s of run %s waits for a %s", task.step_index, task.run_id, wait.kind, extra=log)

    async def _release(self, task: common_pb2.Task) -> None:
        await self._report_failure(task, common_pb2.Failure(message="released by a stopping worker"), release=True)

    async def _report_failure(
        self,
        task: common_pb2.Task,
        failure: common_pb2.Failure,
        *,
        release: bool,
        cancelled: bool = False,
        activities: list[common_pb2.Activity] | None = None,
    ) -> None:
        request = pb.FailTaskRequest(
            worker_id=self.worker_id,
            task_token=task.task_token,
            failure=failure,
            release=release,
            cancelled=cancelled,
            activities=activities or [],
        )
        try:
            await call(self._stub.FailTask, request, timeout=CALL_TIMEOUT, retry_for=30.0)
        except RpcError as err:
            # A lease that lapsed meanwhile: the server re-dispatches the task anyway.
            logger.warning(
                "could not report step %s of run %s: %s",
                task.step_index,
                task.run_id,
                err,
                extra={"run_id": task.run_id, "step_index": task.step_index, "attempt": task.attempt},
            )


def _agent_id(worker_id: str) -> str:
    """The worker's id as an agent id: characters agent ids do not allow become '-'."""
    cleaned = re.sub(r"[^A-Za-z0-9._:@-]", "-", worker_id)[:128]
    return cleaned if cleaned[:1].isalnum() else f"w{cleaned}"[:128]
