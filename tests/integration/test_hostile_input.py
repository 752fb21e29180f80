"""Hostile input to the API: out-of-range durations, NUL characters, huge values, name clashes.

The server fixtures (one per backend for the module) and the helpers are those of
`test_api_validation`; each rejection is checked for the status, the field it names and leaks,
and the server must log no error for any of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from cmo.api.v1 import common_pb2, run_service_pb2, worker_service_pb2
from tests.integration import test_api_validation as base
from tests.integration.test_api_validation import Api, claim, rejected, snapshot, start, suspension, two_nodes, unique

pytestmark = pytest.mark.asyncio(loop_scope="module")

# The same fixtures as test_api_validation: a server per backend, no error logged by it.
api = base.api
graph = base.graph
no_server_errors = base.no_server_errors

Code = grpc.StatusCode


# -- durations ----------------------------------------------------------------------------------

BAD_DURATIONS = [
    pytest.param(2**62, 0, id="2^62-seconds"),
    pytest.param(-(2**62), 0, id="minus-2^62-seconds"),
    pytest.param(1, -5, id="mixed-signs"),
    pytest.param(-1, 5, id="mixed-signs-negative-seconds"),
    pytest.param(0, 10**9, id="nanos-too-large"),
    pytest.param(0, -(10**9), id="nanos-too-small"),
]


async def wait_run_with(api: Api, graph: common_pb2.GraphDef, duration: Duration) -> None:
    request = run_service_pb2.WaitRunRequest(run_id=await start(api, graph), timeout=duration)
    await rejected(api.runs.WaitRun(request, timeout=10), Code.INVALID_ARGUMENT, "timeout")


async def poll_task_with(api: Api, graph: common_pb2.GraphDef, duration: Duration) -> None:
    run_id = await start(api, graph)
    request = worker_service_pb2.PollTaskRequest(
        worker_id="w1",
        task_queues=["default"],
        graphs=[common_pb2.GraphRef(graph_id=graph.graph_id, version=1)],
        wait=duration,
    )
    await rejected(api.workers.PollTask(request, timeout=10), Code.INVALID_ARGUMENT, "wait")
    assert (await claim(api, graph)).run_id == run_id, "the rejected poll must not have leased the task"


async def prune_runs_with(api: Api, graph: common_pb2.GraphDef, duration: Duration) -> None:
    run_id = await start(api, graph)
    await api.runs.TerminateRun(run_service_pb2.TerminateRunRequest(run_id=run_id), timeout=10)
    request = run_service_pb2.PruneRunsRequest(older_than=duration)
    await rejected(api.runs.PruneRuns(request, timeout=10), Code.INVALID_ARGUMENT, "older_than")
    await snapshot(api, run_id)  # still there


async def suspend_task_with(api: Api, graph: common_pb2.GraphDef, duration: Duration) -> None:
    run_id = await start(api, graph)
    task = await claim(api, graph)
    request = suspension(task, kind="timer", seq=0, duration=duration)
    await rejected(api.workers.SuspendTask(request, timeout=10), Code.INVALID_ARGUMENT, "wait.duration")
    run, _ = await snapshot(api, run_id)
    assert run.status == common_pb2.RUN_STATUS_RUNNING


def register_graph_with(interval: str) -> Callable[[Api, common_pb2.GraphDef, Duration], Awaitable[None]]:
    async def register(api: Api, graph: common_pb2.GraphDef, duration: Duration) -> None:
        definition = two_nodes(unique("g"))
        getattr(definition.nodes[1].retry, interval).CopyFrom(duration)
        request = worker_service_pb2.RegisterGraphRequest(graph=definition)
        field = f"graph.nodes[1].retry.{interval}"
        await rejected(api.workers.RegisterGraph(request, timeout=10), Code.INVALID_ARGUMENT, field)
        start_it = run_service_pb2.StartRunRequest(graph_id=definition.graph_id)
        await rejected(api.runs.StartRun(start_it, timeout=10), Code.NOT_FOUND)

    return register


DURATION_FIELDS = [
    pytest.param(wait_run_with, id="WaitRun.timeout"),
    pytest.param(poll_task_with, id="PollTask.wait"),
    pytest.param(prune_runs_with, id="PruneRuns.older_than"),
    pytest.param(suspend_task_with, id="SuspendTask.wait.duration"),
    pytest.param(register_graph_with("initial_interval"), id="RetryPolicy.initial_interval"),
    pytest.param(register_graph_with("max_interval"), id="RetryPolicy.max_interval"),
]


@pytest.mark.parametrize("call", DURATION_FIELDS)
@pytest.mark.parametrize(("seconds", "nanos"), BAD_DURATIONS)
async def test_an_out_of_range_or_malformed_duration_is_invalid_argument_naming_its_field(
    api: Api,
    graph: common_pb2.GraphDef,
    call: Callable[[Api, common_pb2.GraphDef, Duration], Awaitable[Any]],
    seconds: int,
    nanos: int,
) -> None:
    await call(api, graph, Duration(seconds=seconds, nanos=nanos))
