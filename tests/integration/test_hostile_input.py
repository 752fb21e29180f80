"""Hostile input to the API: out-of-range durations, NUL characters, huge values, name clashes.

The server fixtures (one per backend for the module) and the helpers are those of
`test_api_validation`; each rejection is checked for the status, the field it names and leaks,
and the server must log no error for any of it.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from cmo.api.v1 import common_pb2, run_service_pb2, worker_service_pb2
from tests.integration import test_api_validation as base
from tests.integration.test_api_validation import (
    Api,
    claim,
    rejected,
    snapshot,
    start,
    suspension,
    task_call,
    two_nodes,
    unique,
)

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


async def start_run_with(api: Api, graph: common_pb2.GraphDef, duration: Duration) -> None:
    run_id = unique("run")
    request = run_service_pb2.StartRunRequest(run_id=run_id, graph_id=graph.graph_id, wait_for_result=duration)
    await rejected(api.runs.StartRun(request, timeout=10), Code.INVALID_ARGUMENT, "wait_for_result")
    missing = api.runs.GetRun(run_service_pb2.GetRunRequest(run_id=run_id), timeout=10)
    await rejected(missing, Code.NOT_FOUND)  # refused before anything started


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
    pytest.param(start_run_with, id="StartRun.wait_for_result"),
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


# -- bad texts: NUL characters and huge values ---------------------------------------------------
# Postgres text cannot hold a NUL, SQLite can: both must refuse it at the API, naming the field.
# A value echoed whole into a status message outgrew gRPC's metadata limit (RESOURCE_EXHAUSTED
# "metadata size exceeds hard limit"): every echo is capped, and every text has a length limit.

NUL = "bad\x00value"
HUGE = "z" * 70_000
"""Over every text limit (65536 is the largest)."""
TEXTS = [pytest.param(NUL, id="nul"), pytest.param(HUGE, id="huge")]

Sender = Callable[[Api, str, common_pb2.Task, str], Awaitable[Any]]


def failing(task: common_pb2.Task, **failure: Any) -> worker_service_pb2.FailTaskRequest:
    return worker_service_pb2.FailTaskRequest(**task_call(task), failure=common_pb2.Failure(**failure))


def recording(task: common_pb2.Task, **activity: Any) -> worker_service_pb2.RecordActivityRequest:
    fields = {"seq": 0, "kind": "call", "name": "fetch", "request_hash": "h", "result": b"1", **activity}
    return worker_service_pb2.RecordActivityRequest(**task_call(task), activity=common_pb2.Activity(**fields))


def errored(**failure: Any) -> common_pb2.Activity:
    return common_pb2.Activity(seq=0, kind="call", name="fetch", request_hash="h", error=common_pb2.Failure(**failure))


def forged_token(text: str) -> str:
    """A ListRuns (or ListGraphs) token of the right form whose run id (or graph id) is `text`."""
    return base64.urlsafe_b64encode(f"123:{text}".encode()).decode()


async def drain(stream: AsyncIterator[Any]) -> list[Any]:
    return [response async for response in stream]


# Each: puts the text in one field of a request about a started run and its claimed task, and
# the field the refusal must name.
TEXT_FIELDS: list[tuple[str, Sender, str]] = [
    ("CancelRun.reason", lambda api, run_id, task, text: api.runs.CancelRun(
        run_service_pb2.CancelRunRequest(run_id=run_id, reason=text), timeout=10), "reason"),
    ("TerminateRun.reason", lambda api, run_id, task, text: api.runs.TerminateRun(
        run_service_pb2.TerminateRunRequest(run_id=run_id, reason=text), timeout=10), "reason"),
    ("SignalRun.name", lambda api, run_id, task, text: api.runs.SignalRun(
        run_service_pb2.SignalRunRequest(run_id=run_id, name=text), timeout=10), "name"),
    ("GetRun.run_id", lambda api, run_id, task, text: api.runs.GetRun(
        run_service_pb2.GetRunRequest(run_id=text), timeout=10), "run_id"),
    ("ListRuns.page_token", lambda api, run_id, task, text: api.runs.ListRuns(
        run_service_pb2.ListRunsRequest(page_token=text), timeout=10), "page_token"),
    ("ListRuns.page_token-forged", lambda api, run_id, task, text: api.runs.ListRuns(
        run_service_pb2.ListRunsRequest(page_token=forged_token(text)), timeout=10), "page_token"),
    ("ListGraphs.page_token", lambda api, run_id, task, text: api.workers.ListGraphs(
        worker_service_pb2.ListGraphsRequest(page_token=text), timeout=10), "page_token"),
    ("ListGraphs.page_token-forged", lambda api, run_id, task, text: api.workers.ListGraphs(
        worker_service_pb2.ListGraphsRequest(page_token=forged_token(text)), timeout=10), "page_token"),
    ("GetHistory.page_token", lambda api, run_id, task, text: api.runs.GetHistory(
        run_service_pb2.GetHistoryRequest(run_id=run_id, page_token="1" + text), timeout=10), "page_token"),
    ("RecordActivity.kind", lambda api, run_id, task, text: api.workers.RecordActivity(
        recording(task, kind=text), timeout=10), "activity.kind"),
    ("RecordActivity.request_hash", lambda api, run_id, task, text: api.workers.RecordActivity(
        recording(task, request_hash=text), timeout=10), "activity.request_hash"),
    ("RecordActivity.error.message", lambda api, run_id, task, text: api.workers.RecordActivity(
        worker_service_pb2.RecordActivityRequest(**task_call(task), activity=errored(message=text)), timeout=10),
     "activity.error.message"),
    ("SuspendTask.wait.kind", lambda api, run_id, task, text: api.workers.SuspendTask(
        suspension(task, kind=text, seq=0), timeout=10), "wait.kind"),
    ("SuspendTask.wait.request_hash", lambda api, run_id, task, text: api.workers.SuspendTask(
        suspension(task, kind="signal", seq=0, name="go", request_hash=text), timeout=10), "wait.request_hash"),
    ("FailTask.failure.message", lambda api, run_id, task, text: api.workers.FailTask(
        failing(task, message=text), timeout=10), "failure.message"),
    ("FailTask.failure.type", lambda api, run_id, task, text: api.workers.FailTask(
        failing(task, message="boom", type=text), timeout=10), "failure.type"),
    ("FailTask.failure.details", lambda api, run_id, task, text: api.workers.FailTask(
        failing(task, message="boom", details=text), timeout=10), "failure.details"),
    ("FailTask.activities.error.details", lambda api, run_id, task, text: api.workers.FailTask(
        worker_service_pb2.FailTaskRequest(**task_call(task), failure=common_pb2.Failure(message="boom"),
                                           activities=[errored(message="m", details=text)]), timeout=10),
     "activities[0].error.details"),
    ("HeartbeatTask.worker_id", lambda api, run_id, task, text: api.workers.HeartbeatTask(
        worker_service_pb2.HeartbeatTaskRequest(**task_call(task, worker_id=text)), timeout=10), "worker_id"),
    ("CompleteTask.next_key", lambda api, run_id, task, text: api.workers.CompleteTask(
        base.completion(task, next_key=text), timeout=10), "next_key"),
    ("GetArtifact.digest", lambda api, run_id, task, text: drain(api.workers.GetArtifact(
        worker_service_pb2.GetArtifactRequest(digest=text), timeout=10)), "digest"),
]  # fmt: skip


async def refused_briefly(call: Awaitable[Any], field: str) -> str:
    details = await rejected(call, Code.INVALID_ARGUMENT, field)
    assert len(details.encode()) < 1024, f"{len(details)} characters: {details[:200]}..."
    assert "\x00" not in details
    return details


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize(("send", "field"), [f[1:] for f in TEXT_FIELDS], ids=[f[0] for f in TEXT_FIELDS])
async def test_a_nul_or_huge_text_is_invalid_argument_naming_the_field_briefly_and_changes_nothing(
    api: Api, graph: common_pb2.GraphDef, send: Sender, field: str, text: str
) -> None:
    run_id = await start(api, graph)
    task = await claim(api, graph)
    before = await snapshot(api, run_id)
    await refused_briefly(send(api, run_id, task, text), field)
    assert await snapshot(api, run_id) == before
    response = await api.workers.CompleteTask(base.completion(task), timeout=10)  # the attempt still holds the task
    assert response.run_status == common_pb2.RUN_STATUS_RUNNING


async def test_complete_task_naming_too_many_eager_queues_is_refused_briefly(
    api: Api, graph: common_pb2.GraphDef
) -> None:
    await start(api, graph)
    task = await claim(api, graph)
    request = base.completion(task, eager_task_queues=[f"q{i}" for i in range(101)])
    await refused_briefly(api.workers.CompleteTask(request, timeout=10), "eager_task_queues")
    await api.workers.CompleteTask(base.completion(task), timeout=10)


def graph_with(edit: Callable[[common_pb2.GraphDef], object]) -> worker_service_pb2.RegisterGraphRequest:
    definition = two_nodes(unique("g"))
    edit(definition)
    return worker_service_pb2.RegisterGraphRequest(graph=definition)


async def refused_registration(api: Api, request: worker_service_pb2.RegisterGraphRequest, field: str) -> None:
    await refused_briefly(api.workers.RegisterGraph(request, timeout=10), field)
    if field != "graph.graph_id":  # else there is no name to look up
        start_it = run_service_pb2.StartRunRequest(graph_id=request.graph.graph_id)
        await rejected(api.runs.StartRun(start_it, timeout=10), Code.NOT_FOUND)


GRAPH_TEXT_FIELDS: list[tuple[str, Callable[[common_pb2.GraphDef, str], object], str]] = [
    ("graph-id", lambda g, text: setattr(g, "graph_id", text), "graph.graph_id"),
    ("entry-node", lambda g, text: setattr(g, "entry_node", text), "graph.entry_node"),
    ("node-id", lambda g, text: setattr(g.nodes[1], "node_id", text), "graph.nodes[1].node_id"),
    ("task-queue", lambda g, text: setattr(g.nodes[0], "task_queue", text), "graph.nodes[0].task_queue"),
    ("edge-from", lambda g, text: setattr(g.edges[0], "from_node", text), "graph.edges[0].from_node"),
    ("edge-to", lambda g, text: setattr(g.edges[0], "to_node", text), "graph.edges[0].to_node"),
    ("edge-key", lambda g, text: setattr(g.edges[0], "key", text), "graph.edges[0].key"),
    ("error-name", lambda g, text: g.nodes[0].retry.non_retryable_errors.extend(["KeyError", text]),
     "graph.nodes[0].retry.non_retryable_errors[1]"),
]  # fmt: skip


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize(("edit", "field"), [g[1:] for g in GRAPH_TEXT_FIELDS], ids=[g[0] for g in GRAPH_TEXT_FIELDS])
async def test_a_nul_or_huge_text_in_a_graph_is_invalid_argument_naming_the_field_briefly(
    api: Api, edit: Callable[[common_pb2.GraphDef, str], object], field: str, text: str
) -> None:
    await refused_registration(api, graph_with(lambda g: edit(g, text)), field)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        pytest.param(
            lambda g: g.nodes[0].retry.non_retryable_errors.append("Key Error"),
            "graph.nodes[0].retry.non_retryable_errors[0]",
            id="error-name-with-space",
        ),
        pytest.param(
            lambda g: g.edges.extend(
                common_pb2.EdgeDef(from_node="a", key=f"k{i}", to_node="b") for i in range(10_000)
            ),
            "graph.edges",
            id="too-many-edges",
        ),
        pytest.param(
            lambda g: g.nodes[0].retry.non_retryable_errors.extend(f"E{i}" for i in range(101)),
            "graph.nodes[0].retry.non_retryable_errors",
            id="too-many-error-names",
        ),
    ],
)
async def test_a_graph_over_its_limits_is_invalid_argument_naming_the_field(
    api: Api, edit: Callable[[common_pb2.GraphDef], object], field: str
) -> None:
    await refused_registration(api, graph_with(edit), field)


async def test_the_largest_graph_allowed_registers(api: Api) -> None:
    def largest(g: common_pb2.GraphDef) -> None:
        g.edges.extend(common_pb2.EdgeDef(from_node="a", key=f"k{i}", to_node="b") for i in range(9_999))
        g.nodes[0].retry.non_retryable_errors.extend(f"E{i}" for i in range(100))

    response = await api.workers.RegisterGraph(graph_with(largest), timeout=10)
    assert response.created


async def test_an_unknown_edge_key_of_a_node_with_many_edges_is_named_in_a_short_message(api: Api) -> None:
    definition = two_nodes(unique("g"))
    definition.edges.extend(common_pb2.EdgeDef(from_node="a", key="k" * 120 + str(i), to_node="b") for i in range(2000))
    await api.workers.RegisterGraph(worker_service_pb2.RegisterGraphRequest(graph=definition), timeout=10)
    run_id = await start(api, definition)
    task = await claim(api, definition)
    request = base.completion(task, next_key="nope")
    await refused_briefly(api.workers.CompleteTask(request, timeout=10), "next_key")
    assert (await snapshot(api, run_id))[1] == []


# -- run ids that name another run ----------------------------------------------------------------


async def test_start_run_under_the_id_of_another_run_is_already_exists(api: Api, graph: common_pb2.GraphDef) -> None:
    other_graph = two_nodes(unique("g"))
    await api.workers.RegisterGraph(worker_service_pb2.RegisterGraphRequest(graph=other_graph), timeout=10)
    newer = two_nodes(graph.graph_id, version=2)
    await api.workers.RegisterGraph(worker_service_pb2.RegisterGraphRequest(graph=newer), timeout=10)
    run_id = unique("run")
    first = run_service_pb2.StartRunRequest(run_id=run_id, graph_id=graph.graph_id, graph_version=1, input=b'{"n":1}')
    created = await api.runs.StartRun(first, timeout=10)
    assert created.created

    clashes = [
        run_service_pb2.StartRunRequest(run_id=run_id, graph_id=other_graph.graph_id, input=b'{"n":1}'),
        run_service_pb2.StartRunRequest(run_id=run_id, graph_id=graph.graph_id, graph_version=1, input=b'{"n":2}'),
        run_service_pb2.StartRunRequest(run_id=run_id, graph_id=graph.graph_id, graph_version=2, input=b'{"n":1}'),
    ]
    for clash in clashes:
        details = await rejected(api.runs.StartRun(clash, timeout=10), Code.ALREADY_EXISTS, "run_id")
        assert run_id in details

    # The same request again, however its input is spelled, is the run as it was.
    for same in (first, run_service_pb2.StartRunRequest(run_id=run_id, graph_id=graph.graph_id, input=b'{ "n": 1 }')):
        again = await api.runs.StartRun(same, timeout=10)
        assert not again.created
        assert again.run == created.run
    assert [r.run_id for r in await base.runs_of(api, graph.graph_id)] == [run_id]
    assert await base.runs_of(api, other_graph.graph_id) == []


async def finished_first_step(api: Api, graph: common_pb2.GraphDef) -> str:
    """A run whose step 0 is checkpointed (a -> b), ready to be forked from it (one per graph)."""
    run_id = await start(api, graph)
    task = await claim(api, graph)
    await api.workers.CompleteTask(base.completion(task), timeout=10)
    return run_id


async def test_fork_run_onto_the_id_of_another_run_is_already_exists(api: Api, graph: common_pb2.GraphDef) -> None:
    source = await finished_first_step(api, graph)
    other_graph = two_nodes(unique("g"))
    await api.workers.RegisterGraph(worker_service_pb2.RegisterGraphRequest(graph=other_graph), timeout=10)
    second_source = await finished_first_step(api, other_graph)
    unrelated = await start(api, graph)
    fork_id = unique("fork")
    first = run_service_pb2.ForkRunRequest(run_id=source, from_step=0, new_run_id=fork_id, state=b'{"edited":1}')
    forked = await api.runs.ForkRun(first, timeout=10)
    assert forked.created

    clashes = [
        run_service_pb2.ForkRunRequest(run_id=source, from_step=0, new_run_id=unrelated),
        run_service_pb2.ForkRunRequest(run_id=source, from_step=0, new_run_id=source),
        run_service_pb2.ForkRunRequest(run_id=source, from_step=0, new_run_id=fork_id, state=b'{"edited":2}'),
        run_service_pb2.ForkRunRequest(run_id=source, from_step=0, new_run_id=fork_id),  # without the edit
        run_service_pb2.ForkRunRequest(run_id=second_source, from_step=0, new_run_id=fork_id, state=b'{"edited":1}'),
    ]
    for clash in clashes:
        before = await snapshot(api, clash.new_run_id)
        details = await rejected(api.runs.ForkRun(clash, timeout=10), Code.ALREADY_EXISTS, "new_run_id")
        assert clash.new_run_id in details
        assert await snapshot(api, clash.new_run_id) == before

    again = await api.runs.ForkRun(first, timeout=10)
    assert not again.created
    assert again.run == forked.run
    plain = run_service_pb2.ForkRunRequest(run_id=source, from_step=0, new_run_id=unique("fork"))
    plain_fork = await api.runs.ForkRun(plain, timeout=10)
    assert plain_fork.created
    assert not (await api.runs.ForkRun(plain, timeout=10)).created
