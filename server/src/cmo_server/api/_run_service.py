"""RunService: decode, call the engine, encode. No rules live here."""

from __future__ import annotations

from datetime import timedelta

import grpc

from cmo.api.v1 import run_service_pb2 as pb
from cmo_server.api._convert import run_to_proto, step_to_proto
from cmo_server.api._namespace import namespace_of
from cmo_server.api._status import rpc
from cmo_server.api._validate import check_id, check_range, check_text, duration_or
from cmo_server.config import TERMINAL_STATUSES
from cmo_server.domain import Namespace, NewSignal, Run, RunStatus
from cmo_server.engine import Engine
from cmo_server.errors import FailedPrecondition, InvalidArgument
from cmo_server.progress import Explainer, Progress
from cmo_server.retention import Retention
from cmo_server.telemetry import call_trace_context

__all__ = ["RunServicer"]

MAX_WAIT = timedelta(seconds=60)
ZERO = timedelta(0)
MAX_PAGE = 1000
MAX_REASON = 4096
"""Longest reason of a CancelRun or TerminateRun, in characters."""
MAX_RETENTION = timedelta(days=36500)
"""Longest `older_than` of PruneRuns: a century, well inside what a timestamp holds."""


class RunServicer:
    """Start runs and watch them."""

    def __init__(
        self, engine: Engine, *, retention: Retention | None = None, explainer: Explainer | None = None
    ) -> None:
        self._engine = engine
        self._retention = retention
        self._explainer = explainer

    @rpc
    async def StartRun(self, request: pb.StartRunRequest, context: grpc.aio.ServicerContext) -> pb.StartRunResponse:
        """See the proto."""
        namespace = namespace_of(request)
        wait = duration_or(
            "wait_for_result", request.wait_for_result, request.HasField("wait_for_result"), ZERO, MAX_WAIT
        )
        run, created = await self._engine.start_run(
            namespace,
            run_id=check_id("run_id", request.run_id, required=False),
            graph_id=check_id("graph_id", request.graph_id),
            graph_version=check_range("graph_version", request.graph_version, 0, 2**31 - 1),
            input=request.input,
            trace_context=call_trace_context(context.invocation_metadata()),
        )
        if wait > ZERO and not run.status.terminal:
            run = await self._engine.wait_run(namespace, run.run_id, timeout=wait.total_seconds())
        return pb.StartRunResponse(run=run_to_proto(run), created=created)

    @rpc
    async def GetRun(self, request: pb.GetRunRequest, context: grpc.aio.ServicerContext) -> pb.GetRunResponse:
        """See the proto."""
        namespace = namespace_of(request)
        run = await self._engine.get_run(namespace, check_id("run_id", request.run_id))
        progress = await self._progress(namespace, [run])
        return pb.GetRunResponse(run=run_to_proto(run, progress.get(run.run_id)))

    @rpc
    async def ListRuns(self, request: pb.ListRunsRequest, context: grpc.aio.ServicerContext) -> pb.ListRunsResponse:
        """See the proto."""
        graph_id = check_id("graph_id", request.graph_id, required=False)
        status = None
        if request.status:
            try:
                status = RunStatus(request.status)
            except ValueError:
                raise InvalidArgument("status", f"{request.status} is not a run status") from None
        limit = check_range("page_size", request.page_size, 0, MAX_PAGE) or 100
        namespace = namespace_of(request)
        runs, token = await self._engine.list_runs(
            namespace,
            graph_id=graph_id,
            status=status,
            limit=limit,
            page_token=request.page_token,
            id_prefix=check_id("id_prefix", request.id_prefix, required=False),
        )
        progress = await self._progress(namespace, runs)
        return pb.ListRunsResponse(runs=[run_to_proto(r, progress.get(r.run_id)) for r in runs], next_page_token=token)

    async def _progress(self, namespace: Namespace, runs: list[Run]) -> dict[str, Progress]:
        return {} if self._explainer is None else await self._explainer.explain(namespace, runs)

    @rpc
    async def WaitRun(self, request: pb.WaitRunRequest, context: grpc.aio.ServicerContext) -> pb.WaitRunResponse:
        """See the proto."""
        run_id = check_id("run_id", request.run_id)
        timeout = duration_or("timeout", request.timeout, request.HasField("timeout"), timedelta(seconds=30), MAX_WAIT)
        run = await self._engine.wait_run(namespace_of(request), run_id, timeout=timeout.total_seconds())
        return pb.WaitRunResponse(run=run_to_proto(run))

    @rpc
    async def GetHistory(
        self, request: pb.GetHistoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetHistoryResponse:
        """See the proto."""
        run_id = check_id("run_id", request.run_id)
        limit = check_range("page_size", request.page_size, 0, MAX_PAGE) or MAX_PAGE
        after = -1
        if request.page_token:
            # isascii: str.isdigit() also accepts digits such as "²" that int() refuses.
            token = request.page_token
            if not (token.isascii() and token.isdigit()) or len(token) > 10:
                raise InvalidArgument("page_token", "is not a token this server issued")
            after = int(token)
        steps = await self._engine.get_history(namespace_of(request), run_id, after=after, limit=limit)
        token = str(steps[-1].step_index) if len(steps) == limit else ""
        return pb.GetHistoryResponse(steps=[step_to_proto(s) for s in steps], next_page_token=token)

    @rpc
    async def ForkRun(self, request: pb.ForkRunRequest, context: grpc.aio.ServicerContext) -> pb.ForkRunResponse:
        """See the proto."""
        run, created = await self._engine.fork_run(
            namespace_of(request),
            check_id("run_id", request.run_id),
            from_step=check_range("from_step", request.from_step, 0, 2**31 - 2),
            new_run_id=check_id("new_run_id", request.new_run_id, required=False),
            state=request.state,
            trace_context=call_trace_context(context.invocation_metadata()),
        )
        return pb.ForkRunResponse(run=run_to_proto(run), created=created)

    @rpc
    async def TerminateRun(
        self, request: pb.TerminateRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.TerminateRunResponse:
        """See the proto."""
        reason = check_text("reason", request.reason, MAX_REASON)
        run = await self._engine.terminate_run(namespace_of(request), check_id("run_id", request.run_id), reason=reason)
        return pb.TerminateRunResponse(run=run_to_proto(run))

    @rpc
    async def SignalRun(self, request: pb.SignalRunRequest, context: grpc.aio.ServicerContext) -> pb.SignalRunResponse:
        """See the proto."""
        signal = NewSignal(
            namespace=namespace_of(request),
            run_id=check_id("run_id", request.run_id),
            name=check_id("name", request.name),
            payload=request.payload,
            request_id=check_id("request_id", request.request_id, required=False),
        )
        outcome = await self._engine.signal_run(signal)
        return pb.SignalRunResponse(run=run_to_proto(outcome.run), delivered=outcome.delivered)

    @rpc
    async def CancelRun(self, request: pb.CancelRunRequest, context: grpc.aio.ServicerContext) -> pb.CancelRunResponse:
        """See the proto."""
        reason = check_text("reason", request.reason, MAX_REASON)
        run = await self._engine.cancel_run(namespace_of(request), check_id("run_id", request.run_id), reason=reason)
        return pb.CancelRunResponse(run=run_to_proto(run))

    @rpc
    async def PruneRuns(self, request: pb.PruneRunsRequest, context: grpc.aio.ServicerContext) -> pb.PruneRunsResponse:
        """See the proto."""
        if self._retention is None:
            raise FailedPrecondition("this server does not prune runs")
        if not request.HasField("older_than"):
            raise InvalidArgument("older_than", "is required (how long ago the runs ended)")
        older_than = duration_or("older_than", request.older_than, True, timedelta(0), MAX_RETENTION)
        if older_than <= timedelta(0):
            raise InvalidArgument("older_than", "must be more than zero")
        statuses = []
        for i, value in enumerate(request.statuses):
            try:
                status = RunStatus(value)
            except ValueError:
                raise InvalidArgument(f"statuses[{i}]", f"is not a run status: {value}") from None
            if status not in TERMINAL_STATUSES:
                raise InvalidArgument(f"statuses[{i}]", f"{status.name} runs have not ended; only ended runs go")
            statuses.append(status)
        report = await self._retention.prune(
            namespace=namespace_of(request),
            older_than=older_than,
            statuses=statuses or TERMINAL_STATUSES,
            dry_run=request.dry_run,
        )
        return pb.PruneRunsResponse(runs=report.runs, blobs=report.blobs, dry_run=report.dry_run)
