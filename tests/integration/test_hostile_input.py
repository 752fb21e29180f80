"""Hostile input to the API: out-of-range durations, NUL characters, huge values, name clashes.

The server fixtures (one per backend for the module) and the helpers are those of
`test_api_validation`; each rejection is checked for the status, the field it names and leaks,
and the server must log no error for any of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
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


# -- NUL characters -----------------------------------------------------------------------------
# Postgres text cannot hold a NUL, SQLite can: both must refuse it at the API, naming the field.

NUL = "bad\x00value"


def key_of(task: common_pb2.Task) -> dict[str, Any]:
    return {"worker_id": "w1", "run_id": task.run_id, "step_index": task.step_index, "attempt": task.attempt}


def failing(task: common_pb2.Task, **failure: Any) -> worker_service_pb2.FailTaskRequest:
    return worker_service_pb2.FailTaskRequest(**key_of(task), failure=common_pb2.Failure(**failure))


def recording(task: common_pb2.Task, **activity: Any) -> worker_service_pb2.RecordActivityRequest:
    fields = {"seq": 0, "kind": "call", "name": "fetch", "request_hash": "h", "result": b"1", **activity}
    return worker_service_pb2.RecordActivityRequest(**key_of(task), activity=common_pb2.Activity(**fields))


def errored(**failure: Any) -> common_pb2.Activity:
    return common_pb2.Activity(seq=0, kind="call", name="fetch", request_hash="h", error=common_pb2.Failure(**failure))


# Each: what to send for a started run (and its claimed task), and the field the refusal names.
NUL_FIELDS: list[tuple[str, Callable[[Api, str, common_pb2.Task], Awaitable[Any]], str]] = [
    ("CancelRun.reason", lambda api, run_id, task: api.runs.CancelRun(
        run_service_pb2.CancelRunRequest(run_id=run_id, reason=NUL), timeout=10), "reason"),
    ("TerminateRun.reason", lambda api, run_id, task: api.runs.TerminateRun(
        run_service_pb2.TerminateRunRequest(run_id=run_id, reason=NUL), timeout=10), "reason"),
    ("SignalRun.name", lambda api, run_id, task: api.runs.SignalRun(
        run_service_pb2.SignalRunRequest(run_id=run_id, name=NUL), timeout=10), "name"),
    ("ListRuns.page_token", lambda api, run_id, task: api.runs.ListRuns(
        run_service_pb2.ListRunsRequest(page_token=NUL), timeout=10), "page_token"),
    ("ListRuns.page_token-decoded", lambda api, run_id, task: api.runs.ListRuns(
        run_service_pb2.ListRunsRequest(page_token="MTIzOgA="), timeout=10), "page_token"),  # "123:\x00"
    ("GetHistory.page_token", lambda api, run_id, task: api.runs.GetHistory(
        run_service_pb2.GetHistoryRequest(run_id=run_id, page_token="1\x00"), timeout=10), "page_token"),
    ("RecordActivity.request_hash", lambda api, run_id, task: api.workers.RecordActivity(
        recording(task, request_hash=NUL), timeout=10), "activity.request_hash"),
    ("RecordActivity.error.message", lambda api, run_id, task: api.workers.RecordActivity(
        worker_service_pb2.RecordActivityRequest(**key_of(task), activity=errored(message=NUL)), timeout=10),
     "activity.error.message"),
    ("SuspendTask.wait.request_hash", lambda api, run_id, task: api.workers.SuspendTask(
        suspension(task, kind="signal", seq=0, name="go", request_hash=NUL), timeout=10), "wait.request_hash"),
    ("FailTask.failure.message", lambda api, run_id, task: api.workers.FailTask(
        failing(task, message=NUL), timeout=10), "failure.message"),
    ("FailTask.failure.details", lambda api, run_id, task: api.workers.FailTask(
        failing(task, message="boom", details=NUL), timeout=10), "failure.details"),
    ("FailTask.failure.type", lambda api, run_id, task: api.workers.FailTask(
        failing(task, message="boom", type=NUL), timeout=10), "failure.type"),
    ("FailTask.activities.error.details", lambda api, run_id, task: api.workers.FailTask(
        worker_service_pb2.FailTaskRequest(**key_of(task), failure=common_pb2.Failure(message="boom"),
                                           activities=[errored(message="m", details=NUL)]), timeout=10),
     "activities[0].error.details"),
    ("HeartbeatTask.worker_id", lambda api, run_id, task: api.workers.HeartbeatTask(
        worker_service_pb2.HeartbeatTaskRequest(**{**key_of(task), "worker_id": NUL}), timeout=10), "worker_id"),
]  # fmt: skip


@pytest.mark.parametrize(("send", "field"), [f[1:] for f in NUL_FIELDS], ids=[f[0] for f in NUL_FIELDS])
async def test_a_nul_in_a_string_field_is_invalid_argument_naming_it_and_changes_nothing(
    api: Api, graph: common_pb2.GraphDef, send: Callable[[Api, str, common_pb2.Task], Awaitable[Any]], field: str
) -> None:
    run_id = await start(api, graph)
    task = await claim(api, graph)
    before = await snapshot(api, run_id)
    details = await rejected(send(api, run_id, task), Code.INVALID_ARGUMENT, field)
    assert "\x00" not in details
    assert await snapshot(api, run_id) == before
    response = await api.workers.CompleteTask(base.completion(task), timeout=10)  # the attempt still holds the task
    assert response.run_status == common_pb2.RUN_STATUS_RUNNING


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        pytest.param(lambda g: setattr(g, "graph_id", NUL), "graph.graph_id", id="graph-id"),
        pytest.param(lambda g: setattr(g.nodes[1], "node_id", NUL), "graph.nodes[1].node_id", id="node-id"),
        pytest.param(lambda g: setattr(g, "entry_node", NUL), "graph.entry_node", id="entry-node"),
        pytest.param(lambda g: setattr(g.edges[0], "to_node", NUL), "graph.edges[0].to_node", id="edge-to"),
        pytest.param(lambda g: setattr(g.nodes[0], "task_queue", NUL), "graph.nodes[0].task_queue", id="queue"),
        pytest.param(
            lambda g: g.nodes[0].retry.non_retryable_errors.extend(["KeyError", NUL]),
            "graph.nodes[0].retry.non_retryable_errors[1]",
            id="error-name",
        ),
    ],
)
async def test_a_nul_in_a_graph_definition_is_invalid_argument_naming_the_field(
    api: Api, edit: Callable[[common_pb2.GraphDef], object], field: str
) -> None:
    definition = two_nodes(unique("g"))
    edit(definition)
    request = worker_service_pb2.RegisterGraphRequest(graph=definition)
    await rejected(api.workers.RegisterGraph(request, timeout=10), Code.INVALID_ARGUMENT, field)


# -- huge values --------------------------------------------------------------------------------
# A value echoed whole into a status message outgrew gRPC's metadata limit (RESOURCE_EXHAUSTED
# "metadata size exceeds hard limit"): every echo is capped, and every text has a length limit.

HUGE = "z" * 20_000


async def refused_briefly(call: Awaitable[Any], field: str) -> None:
    details = await rejected(call, Code.INVALID_ARGUMENT, field)
    assert len(details.encode()) < 1024, f"{len(details)} characters: {details[:200]}..."


async def drain(stream: AsyncIterator[Any]) -> list[Any]:
    return [response async for response in stream]


def graph_with(edit: Callable[[common_pb2.GraphDef], object]) -> worker_service_pb2.RegisterGraphRequest:
    definition = two_nodes(unique("g"))
    edit(definition)
    return worker_service_pb2.RegisterGraphRequest(graph=definition)


HUGE_GRAPHS: list[tuple[str, Callable[[common_pb2.GraphDef], object], str]] = [
    ("entry-node", lambda g: setattr(g, "entry_node", HUGE), "graph.entry_node"),
    ("node-id", lambda g: setattr(g.nodes[1], "node_id", HUGE), "graph.nodes[1].node_id"),
    ("edge-from", lambda g: setattr(g.edges[0], "from_node", HUGE), "graph.edges[0].from_node"),
    ("edge-to", lambda g: setattr(g.edges[0], "to_node", HUGE), "graph.edges[0].to_node"),
    ("edge-key", lambda g: setattr(g.edges[0], "key", HUGE), "graph.edges[0].key"),
    ("task-queue", lambda g: setattr(g.nodes[0], "task_queue", HUGE), "graph.nodes[0].task_queue"),
    ("error-name", lambda g: g.nodes[0].retry.non_retryable_errors.append(HUGE),
     "graph.nodes[0].retry.non_retryable_errors[0]"),
    ("error-name-with-space", lambda g: g.nodes[0].retry.non_retryable_errors.append("Key Error"),
     "graph.nodes[0].retry.non_retryable_errors[0]"),
    ("too-many-edges", lambda g: g.edges.extend(
        common_pb2.EdgeDef(from_node="a", key=f"k{i}", to_node="b") for i in range(10_000)), "graph.edges"),
    ("too-many-error-names", lambda g: g.nodes[0].retry.non_retryable_errors.extend(f"E{i}" for i in range(101)),
     "graph.nodes[0].retry.non_retryable_errors"),
]  # fmt: skip


@pytest.mark.parametrize(("edit", "field"), [g[1:] for g in HUGE_GRAPHS], ids=[g[0] for g in HUGE_GRAPHS])
async def test_a_huge_value_or_count_in_a_graph_is_invalid_argument_in_a_short_message(
    api: Api, edit: Callable[[common_pb2.GraphDef], object], field: str
) -> None:
    request = graph_with(edit)
    await refused_briefly(api.workers.RegisterGraph(request, timeout=10), field)
    start_it = run_service_pb2.StartRunRequest(graph_id=request.graph.graph_id)
    await rejected(api.runs.StartRun(start_it, timeout=10), Code.NOT_FOUND)


async def test_the_largest_graph_allowed_registers(api: Api) -> None:
    def largest(g: common_pb2.GraphDef) -> None:
        g.edges.extend(common_pb2.EdgeDef(from_node="a", key=f"k{i}", to_node="b") for i in range(9_999))
        g.nodes[0].retry.non_retryable_errors.extend(f"E{i}" for i in range(100))

    response = await api.workers.RegisterGraph(graph_with(largest), timeout=10)
    assert response.created


HUGE_CALLS: list[tuple[str, Callable[[Api, str, common_pb2.Task], Awaitable[Any]], str]] = [
    ("CancelRun.reason", lambda api, run_id, task: api.runs.CancelRun(
        run_service_pb2.CancelRunRequest(run_id=run_id, reason=HUGE), timeout=10), "reason"),
    ("TerminateRun.reason", lambda api, run_id, task: api.runs.TerminateRun(
        run_service_pb2.TerminateRunRequest(run_id=run_id, reason=HUGE), timeout=10), "reason"),
    ("GetRun.run_id", lambda api, run_id, task: api.runs.GetRun(
        run_service_pb2.GetRunRequest(run_id=HUGE), timeout=10), "run_id"),
    ("ListRuns.page_token", lambda api, run_id, task: api.runs.ListRuns(
        run_service_pb2.ListRunsRequest(page_token=HUGE), timeout=10), "page_token"),
    ("FailTask.failure.message", lambda api, run_id, task: api.workers.FailTask(
        failing(task, message=HUGE), timeout=10), "failure.message"),
    ("FailTask.failure.type", lambda api, run_id, task: api.workers.FailTask(
        failing(task, message="boom", type=HUGE), timeout=10), "failure.type"),
    ("FailTask.failure.details", lambda api, run_id, task: api.workers.FailTask(
        failing(task, message="boom", details="d" * 65_537), timeout=10), "failure.details"),
    ("RecordActivity.error.message", lambda api, run_id, task: api.workers.RecordActivity(
        worker_service_pb2.RecordActivityRequest(**key_of(task), activity=errored(message=HUGE)), timeout=10),
     "activity.error.message"),
    ("RecordActivity.kind", lambda api, run_id, task: api.workers.RecordActivity(
        recording(task, kind=HUGE), timeout=10), "activity.kind"),
    ("RecordActivity.request_hash", lambda api, run_id, task: api.workers.RecordActivity(
        recording(task, request_hash=HUGE), timeout=10), "activity.request_hash"),
    ("SuspendTask.wait.kind", lambda api, run_id, task: api.workers.SuspendTask(
        suspension(task, kind=HUGE, seq=0), timeout=10), "wait.kind"),
    ("CompleteTask.next_key", lambda api, run_id, task: api.workers.CompleteTask(
        base.completion(task, next_key=HUGE), timeout=10), "next_key"),
    ("CompleteTask.eager_task_queues", lambda api, run_id, task: api.workers.CompleteTask(
        base.completion(task, eager_task_queues=[f"q{i}" for i in range(101)]), timeout=10), "eager_task_queues"),
    ("GetArtifact.digest", lambda api, run_id, task: drain(api.workers.GetArtifact(
        worker_service_pb2.GetArtifactRequest(digest=HUGE), timeout=10)), "digest"),
]  # fmt: skip


@pytest.mark.parametrize(("send", "field"), [c[1:] for c in HUGE_CALLS], ids=[c[0] for c in HUGE_CALLS])
async def test_a_huge_value_is_invalid_argument_in_a_short_message_and_changes_nothing(
    api: Api, graph: common_pb2.GraphDef, send: Callable[[Api, str, common_pb2.Task], Awaitable[Any]], field: str
) -> None:
    run_id = await start(api, graph)
    task = await claim(api, graph)
    before = await snapshot(api, run_id)
    await refused_briefly(send(api, run_id, task), field)
    assert await snapshot(api, run_id) == before
    response = await api.workers.CompleteTask(base.completion(task), timeout=10)
    assert response.run_status == common_pb2.RUN_STATUS_RUNNING


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
