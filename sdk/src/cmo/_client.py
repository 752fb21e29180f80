"""The client: start runs, wait for results, look at runs and their steps."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any, Generic, TypeVar, cast

import grpc
from opentelemetry.trace import TracerProvider

from cmo._auth import with_token
from cmo._convert import duration, graph_to_proto, run_from_proto, step_from_proto
from cmo._converter import from_json, to_json
from cmo._graph import Graph
from cmo._history import RunHistory
from cmo._rpc import address_problem, call, open_channel, rpc_error
from cmo._rpc import wait_ready as wait_ready_for
from cmo._telemetry import client_interceptors, trace_metadata
from cmo._tls import TLSConfig
from cmo._types import PruneReport, RunInfo, RunStatus, StepInfo
from cmo.api.v1 import common_pb2
from cmo.api.v1 import run_service_pb2 as run_pb
from cmo.api.v1 import run_service_pb2_grpc as run_grpc
from cmo.api.v1 import worker_service_pb2 as worker_pb
from cmo.api.v1 import worker_service_pb2_grpc as worker_grpc
from cmo.errors import RpcError, RunFailedError, RunNotFoundError, WaitTimeoutError
from cmo.registry import RegistryClient
from cmo.serialization import canonical_json

__all__ = ["Client", "RunHandle"]

S = TypeVar("S")

DEFAULT_TARGET = "127.0.0.1:7233"
DEFAULT_NAMESPACE_PART = "default"
"""The tenant and the project of the namespace a client names when it is given none."""
CALL_TIMEOUT = 30.0
PRUNE_TIMEOUT = 3600.0
"""A prune deletes in batches and reads every stored manifest: it may take long."""
WAIT_SLICE = 30.0  # the server caps one WaitRun at 60 s; ask for less and loop


class Client:
    """A connection to a CMO server. Use `await Client.connect(...)`; close with `aclose()`."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        target: str,
        tracer_provider: TracerProvider | None = None,
        tenant: str = DEFAULT_NAMESPACE_PART,
        project: str = DEFAULT_NAMESPACE_PART,
    ) -> None:
        self._channel = channel
        self.target = target
        """The server address."""
        self.tenant = tenant or DEFAULT_NAMESPACE_PART
        """The namespace every call of this client names: its tenant and project."""
        self.project = project or DEFAULT_NAMESPACE_PART
        self._namespace = common_pb2.Namespace(tenant=self.tenant, project=self.project)
        self._owns_channel = True
        self.tracer_provider = tracer_provider
        """Records the spans of this client and its workers; None: the global OpenTelemetry provider."""
        self._runs = run_grpc.RunServiceStub(channel)
        self._workers = worker_grpc.WorkerServiceStub(channel)
        self._traced_channel = False  # the channel's interceptors carry the trace context themselves

    @classmethod
    async def connect(
        cls,
        target: str = DEFAULT_TARGET,
        *,
        wait_ready: float | None = 10.0,
        tracer_provider: TracerProvider | None = None,
        tenant: str = DEFAULT_NAMESPACE_PART,
        project: str = DEFAULT_NAMESPACE_PART,
        token: str | None = None,
        tls: TLSConfig | bool | None = None,
        fail_fast: bool = False,
    ) -> Client:
        """Connect to the server at `target` (host:port), waiting up to `wait_ready` s for it.

        `wait_ready=None` waits as long as it takes, logging a warning (less and less often) that
        it waits: what a worker started before its server wants. `fail_fast` gives up at the
        first connection that fails (refused, a host name that does not resolve, a TLS handshake
        refused) rather than waiting for a server to come up, as a command-line tool wants.

        Every run, graph and queue the client names lives in the namespace (`tenant`, `project`),
        default/default unless given; `in_namespace` gives a client of another one on the same
        connection.

        Spans (steps, activities, and calls with `cmo-sdk[otel]` installed) go to `tracer_provider`,
        else to the global OpenTelemetry provider: none are recorded until the application sets one.

        `token` (else $CMO_TOKEN) is sent with every call as a bearer token, for a server with
        authentication on.

        `tls` makes the connection TLS: a `TLSConfig` (the CA to trust, and a client certificate
        for a server that requires one), or True for the system's CAs and no certificate; False is
        plaintext. Not given, it comes from $CMO_TLS_CA_FILE, $CMO_TLS_CLIENT_CERT_FILE and
        $CMO_TLS_CLIENT_KEY_FILE, plaintext when none is set.

        Raises:
            ConnectionError: no server answered within `wait_ready` (over TLS, also: the handshake
                failed, e.g. an untrusted server certificate or a client certificate refused).
            OSError: a TLS file cannot be read.
            ValueError: `target` is a URL (http://...) rather than host:port; or, of the
                $CMO_TLS_* variables, only one of the client certificate and its key is set.
        """
        if problem := address_problem(target):
            raise ValueError(problem)
        if tls is None:
            tls = TLSConfig.from_env()
        elif tls is True:
            tls = TLSConfig()
        credentials = tls.channel_credentials() if isinstance(tls, TLSConfig) else None
        interceptors = client_interceptors(tracer_provider)
        channel = with_token(
            open_channel(target, interceptors=interceptors, credentials=credentials),
            os.environ.get("CMO_TOKEN", "") if token is None else token,
        )
        try:
            await wait_ready_for(channel, target, timeout=wait_ready, fail_fast=fail_fast)
        except ConnectionError as err:
            await channel.close()
            over = " (over TLS: or the TLS handshake failed)" if credentials is not None else ""
            raise ConnectionError(f"{err}{over}") from None
        client = cls(channel, target=target, tracer_provider=tracer_provider, tenant=tenant, project=project)
        client._traced_channel = bool(interceptors)
        return client

    async def _wait_connected(self) -> None:
        """Wait, as long as it takes, for the connection to the server (logging that it waits)."""
        await wait_ready_for(self._channel, self.target, timeout=None)

    def in_namespace(self, tenant: str, project: str) -> Client:
        """A client of another namespace sharing this one's connection (closing it leaves the connection open)."""
        other = Client(
            self._channel, target=self.target, tracer_provider=self.tracer_provider, tenant=tenant, project=project
        )
        other._traced_channel = self._traced_channel
        other._owns_channel = False
        return other

    @property
    def registry(self) -> RegistryClient:
        """The agent registry of this client's namespace."""
        return RegistryClient(self._channel, self._namespace)

    @property
    def namespace(self) -> common_pb2.Namespace:
        """The namespace as the wire carries it."""
        return self._namespace

    def _trace_metadata(self) -> list[tuple[str, str]]:
        """The caller's trace context for a call that starts a run, unless the channel adds it."""
        return [] if self._traced_channel else trace_metadata()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the channel (unless it is another client's); idempotent."""
        if self._owns_channel:
            await self._channel.close()

    @property
    def worker_stub(self) -> worker_grpc.WorkerServiceStub:
        """The raw WorkerService stub (used by `Worker`)."""
        return self._workers

    async def start(
        self,
        graph: Graph[S] | str,
        state: S | Any = None,
        *,
        run_id: str | None = None,
        version: int | None = None,
    ) -> RunHandle[S]:
        """Start a run of a graph from an initial state.

        Args:
            graph: The graph, or its id (then `version` or the newest registered one).
            state: The initial state: dict, dataclass or pydantic model (None: {}).
            run_id: Your id for the run; starting again with the same id returns the same run,
                which makes starts safe to retry. A new uuid when not given.
            version: Graph version, when `graph` is an id.
        """
        handle, _ = await self._start(graph, state, run_id=run_id, version=version, wait=None)
        return handle

    async def execute(
        self,
        graph: Graph[S] | str,
        state: S | Any = None,
        *,
        run_id: str | None = None,
        version: int | None = None,
        timeout: float | None = None,
    ) -> S:
        """Start a run and wait for its result, in one round trip when it ends within 30 s.

        Like `start(...)` then `result(timeout=...)`, but the server waits with the start, which
        saves the caller a round trip per run.

        Raises:
            RunFailedError: the run failed, was cancelled or terminated.
            WaitTimeoutError: it did not finish within `timeout` seconds.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        wait = WAIT_SLICE if timeout is None else max(0.0, min(WAIT_SLICE, timeout))
        handle, run = await self._start(graph, state, run_id=run_id, version=version, wait=wait)
        if run.status.terminal:
            return handle.outcome(run)
        left = None if timeout is None else max(0.0, timeout - (loop.time() - started))
        return await handle.result(timeout=left)

    async def _start(
        self, graph: Graph[S] | str, state: Any, *, run_id: str | None, version: int | None, wait: float | None
    ) -> tuple[RunHandle[S], RunInfo]:
        """StartRun (waiting up to `wait` seconds for the run to end, if given): the handle and the run."""
        if isinstance(graph, Graph):
            graph_id, graph_version, state_type = graph.graph_id, graph.version, graph.state_type
        else:
            graph_id, graph_version, state_type = graph, version or 0, None
        request = run_pb.StartRunRequest(
            namespace=self._namespace,
            run_id=run_id or uuid.uuid4().hex,  # chosen here so a retried call cannot start two runs
            graph_id=graph_id,
            graph_version=graph_version,
            input=canonical_json(to_json(state if state is not None else {})),
        )
        if wait is not None:
            request.wait_for_result.CopyFrom(duration(wait))
        timeout = CALL_TIMEOUT + (wait or 0.0)
        # The run's steps join the caller's current trace, under the StartRun call.
        metadata = self._trace_metadata()
        try:
            response = await call(self._runs.StartRun, request, timeout=timeout, metadata=metadata)
        except RpcError as err:
            if err.code != "NOT_FOUND" or not isinstance(graph, Graph):
                raise
            # The client has the definition: register it, and the run waits for a worker.
            await self.register_graph(graph)
            response = await call(self._runs.StartRun, request, timeout=timeout, metadata=metadata)
        return RunHandle(self, response.run.run_id, state_type), run_from_proto(response.run)

    async def register_graph(self, graph: Graph[Any]) -> bool:
        """Register a graph version with the server; True if it was new.

        Raises:
            RpcError: ALREADY_EXISTS when this version is registered with another definition.
        """
        request = worker_pb.RegisterGraphRequest(graph=graph_to_proto(graph), namespace=self._namespace)
        response = await call(self._workers.RegisterGraph, request, timeout=CALL_TIMEOUT, retry_for=60.0)
        return bool(response.created)

    async def fork(
        self,
        run_id: str,
        *,
        from_step: int,
        state: Any = None,
        new_run_id: str | None = None,
        state_type: type[S] | None = None,
    ) -> RunHandle[S]:
        """Fork a run: a new run that shares its steps up to `from_step` and goes on from there.

        Args:
            run_id: The run to fork (it is not changed).
            from_step: The last step the fork shares.
            state: Replaces the state of step `from_step` in the fork (dict, dataclass or pydantic).
            new_run_id: Id of the fork; forking again with it returns the same fork.
            state_type: The graph's state type, for the handle's `result()`.
        """
        request = run_pb.ForkRunRequest(
            namespace=self._namespace,
            run_id=run_id,
            from_step=from_step,
            new_run_id=new_run_id or uuid.uuid4().hex,
            state=canonical_json(to_json(state)) if state is not None else b"",
        )
        response = await call(
            self._runs.ForkRun,
            request,
            timeout=CALL_TIMEOUT,
            on_error=lambda e: _not_found(run_id, e),
            metadata=self._trace_metadata(),
        )
        return RunHandle(self, response.run.run_id, state_type)

    async def prune_runs(
        self, *, older_than: timedelta, statuses: Sequence[RunStatus] = (), dry_run: bool = False
    ) -> PruneReport:
        """Delete the runs that ended more than `older_than` ago, then the blobs nothing references.

        `statuses` limits it to runs that ended so (COMPLETED, FAILED, CANCELLED, TERMINATED);
        empty means all of them. Runs that have not ended are never deleted. `dry_run` counts.
        """
        request = run_pb.PruneRunsRequest(
            statuses=[int(s) for s in statuses],  # type: ignore[misc]
            dry_run=dry_run,
            namespace=self._namespace,
        )
        request.older_than.FromTimedelta(older_than)
        response = await call(self._runs.PruneRuns, request, timeout=PRUNE_TIMEOUT)
        return PruneReport(runs=response.runs, blobs=response.blobs, dry_run=response.dry_run)

    async def terminate(self, run_id: str, *, reason: str = "") -> RunInfo:
        """End a run now (TERMINATED); a worker running its step is refused the checkpoint.

        A run that has ended already is returned as it is.
        """
        request = run_pb.TerminateRunRequest(run_id=run_id, reason=reason, namespace=self._namespace)
        response = await call(
            self._runs.TerminateRun, request, timeout=CALL_TIMEOUT, on_error=lambda e: _not_found(run_id, e)
        )
        return run_from_proto(response.run)

    async def signal(self, run_id: str, name: str, payload: Any = None, *, request_id: str = "") -> bool:
        """Send the signal `name` with a JSON-shaped payload to a run.

        It wakes the step waiting in `ctx.wait_for_signal(name)`, or is kept until the run waits
        for it. Give a `request_id` to make retries safe: a repeat of it is ignored.

        Returns:
            Whether it woke a waiting step (False: kept for later, or a repeat).

        Raises:
            RunNotFoundError: no run has this id.
            RpcError: FAILED_PRECONDITION once the run has ended.
        """
        request = run_pb.SignalRunRequest(
            namespace=self._namespace,
            run_id=run_id,
            name=name,
            payload=canonical_json(to_json(payload)),
            request_id=request_id,
        )
        response = await call(
            self._runs.SignalRun, request, timeout=CALL_TIMEOUT, on_error=lambda e: _not_found(run_id, e)
        )
        return bool(response.delivered)

    async def cancel(self, run_id: str, *, reason: str = "") -> RunInfo:
        """Ask a run to stop; the node sees it at its next ctx call and the run ends CANCELLED.

        A waiting step wakes with the cancellation; a step not yet started never starts. A run
        that has ended already is returned as it is.
        """
        request = run_pb.CancelRunRequest(run_id=run_id, reason=reason, namespace=self._namespace)
        response = await call(
            self._runs.CancelRun, request, timeout=CALL_TIMEOUT, on_error=lambda e: _not_found(run_id, e)
        )
        return run_from_proto(response.run)

    def get_handle(self, run_id: str, *, state: type[S] | None = None) -> RunHandle[S]:
        """A handle on an existing run."""
        return RunHandle(self, run_id, state)

    async def get_run(self, run_id: str) -> RunInfo:
        """Describe a run.

        Raises:
            RunNotFoundError: no run has this id.
        """
        response = await call(
            self._runs.GetRun,
            run_pb.GetRunRequest(run_id=run_id, namespace=self._namespace),
            timeout=CALL_TIMEOUT,
            on_error=lambda e: _not_found(run_id, e),
        )
        return run_from_proto(response.run)

    async def list_runs(
        self,
        *,
        graph_id: str = "",
        status: RunStatus | None = None,
        limit: int | None = None,
        id_prefix: str = "",
    ) -> AsyncIterator[RunInfo]:
        """Runs, newest first, page by page (with `id_prefix`: those whose id starts with it, in id order)."""
        token, seen = "", 0
        while True:
            request = run_pb.ListRunsRequest(
                namespace=self._namespace,
                graph_id=graph_id,
                status=cast(Any, int(status or 0)),
                page_size=100,
                page_token=token,
                id_prefix=id_prefix,
            )
            response = await call(self._runs.ListRuns, request, timeout=CALL_TIMEOUT)
            for run in response.runs:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield run_from_proto(run)
            token = response.next_page_token
            if not token:
                return

    async def get_history(self, run_id: str) -> list[StepInfo]:
        """Every checkpointed step of a run, in order."""
        steps: list[StepInfo] = []
        token = ""
        while True:
            request = run_pb.GetHistoryRequest(run_id=run_id, page_token=token, namespace=self._namespace)
            response = await call(
                self._runs.GetHistory, request, timeout=CALL_TIMEOUT, on_error=lambda e: _not_found(run_id, e)
            )
            steps.extend(step_from_proto(s) for s in response.steps)
            token = response.next_page_token
            if not token:
                return steps

    async def export_history(self, run_id: str) -> RunHistory:
        """The run and all its steps with their activities: what a replay needs."""
        run = await self.get_run(run_id)
        return RunHistory(run, tuple(await self.get_history(run_id)))

    async def wait(self, run_id: str, *, timeout: float | None = None) -> RunInfo:
        """The run once it is terminal.

        Raises:
            WaitTimeoutError: it was not finished within `timeout` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            slice_ = WAIT_SLICE if deadline is None else max(0.0, min(WAIT_SLICE, deadline - loop.time()))
            request = run_pb.WaitRunRequest(run_id=run_id, timeout=duration(slice_), namespace=self._namespace)
            response = await call(
                self._runs.WaitRun,
                request,
                timeout=slice_ + CALL_TIMEOUT,
                retry_for=3600.0,
                on_error=lambda e: _not_found(run_id, e),
            )
            run = run_from_proto(response.run)
            if run.status.terminal:
                return run
            if deadline is not None and loop.time() >= deadline:
                raise WaitTimeoutError(f"run {run_id} is still {run.status.name} after {timeout:g}s")


class RunHandle(Generic[S]):
    """A handle on one run: wait for its result, describe it, read its steps."""

    def __init__(self, client: Client, run_id: str, state_type: type[S] | None) -> None:
        self._client = client
        self.run_id = run_id
        self._state_type = state_type

    async def result(self, *, timeout: float | None = None) -> S:
        """The final state once the run completes, as the graph's state type.

        Raises:
            RunFailedError: the run failed, was cancelled or terminated.
            WaitTimeoutError: it did not finish within `timeout` seconds.
        """
        return self.outcome(await self._client.wait(self.run_id, timeout=timeout))

    def outcome(self, run: RunInfo) -> S:
        """The final state of this ended run, as the graph's state type.

        Raises:
            RunFailedError: the run failed, was cancelled or terminated.
        """
        if run.status is not RunStatus.COMPLETED:
            raise RunFailedError(self.run_id, run.status.name, run.failure)
        return from_json(run.result, self._state_type)

    async def describe(self) -> RunInfo:
        """The run as the server has it now."""
        return await self._client.get_run(self.run_id)

    async def history(self) -> list[StepInfo]:
        """The run's checkpointed steps."""
        return await self._client.get_history(self.run_id)

    async def terminate(self, *, reason: str = "") -> RunInfo:
        """End the run now (see `Client.terminate`)."""
        return await self._client.terminate(self.run_id, reason=reason)

    async def signal(self, name: str, payload: Any = None, *, request_id: str = "") -> bool:
        """Send it a signal (see `Client.signal`)."""
        return await self._client.signal(self.run_id, name, payload, request_id=request_id)

    async def cancel(self, *, reason: str = "") -> RunInfo:
        """Ask it to stop (see `Client.cancel`)."""
        return await self._client.cancel(self.run_id, reason=reason)

    def __repr__(self) -> str:
        return f"RunHandle({self.run_id!r})"


def _not_found(run_id: str, err: grpc.aio.AioRpcError) -> Exception:
    if err.code() == grpc.StatusCode.NOT_FOUND:
        return RunNotFoundError(run_id, err.details() or f"run {run_id!r} does not exist")
    return rpc_error(err)
