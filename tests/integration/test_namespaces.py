"""Namespaces over the wire, on both backends: a resource of another namespace does not exist.

One namespace (acme/web) holds a graph, runs, a leased task with a recorded activity, a kept
signal and an artifact. Every RPC is then called from another namespace (other/web) naming those
resources: each answers as for something that does not exist (NOT_FOUND, or an empty answer),
and afterwards everything in acme/web is exactly as it was.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf.duration_pb2 import Duration

from cmo.api.v1 import common_pb2, run_service_pb2, run_service_pb2_grpc, worker_service_pb2, worker_service_pb2_grpc
from cmo_server.api._task_token import encode_task_token
from cmo_server.app import CmoServer
from cmo_server.config import BlobConfig, EngineLimits, ServerConfig, StoreConfig
from cmo_server.domain import Namespace, TaskRef
from tests.support.postgres import create_database, drop_database

pytestmark = pytest.mark.asyncio(loop_scope="module")

Code = grpc.StatusCode
HOME = common_pb2.Namespace(tenant="acme", project="web")
AWAY = common_pb2.Namespace(tenant="other", project="web")
R = run_service_pb2
W = worker_service_pb2


@dataclass
class Api:
    runs: run_service_pb2_grpc.RunServiceStub
    workers: worker_service_pb2_grpc.WorkerServiceStub


@pytest_asyncio.fixture(
    scope="module", loop_scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    limits = EngineLimits(task_lease=timedelta(seconds=30))
    blobs = BlobConfig(dir=str(tmp_path_factory.mktemp("blobs")))
    server_url = database = ""
    if request.param == "sqlite":
        store = StoreConfig(sqlite_path=str(tmp_path_factory.mktemp("ns") / "cmo.db"))
    else:
        server_url = request.getfixturevalue("postgres_server")
        database = await asyncio.to_thread(create_database, server_url)
        store = StoreConfig(database_url=database, pool_size=4)
    config = ServerConfig(listen="127.0.0.1:0", store=store, blob=blobs, limits=limits)
    try:
        async with CmoServer.running(config) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            yield Api(run_service_pb2_grpc.RunServiceStub(ch), worker_service_pb2_grpc.WorkerServiceStub(ch))
    finally:
        if database:
            await asyncio.to_thread(drop_database, server_url, database)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def two_nodes(graph_id: str, *, queue: str, retries: int = 3) -> common_pb2.GraphDef:
    graph = common_pb2.GraphDef(graph_id=graph_id, version=1, entry_node="a")
    graph.nodes.add(node_id="a", task_queue=queue).retry.max_attempts = retries
    graph.nodes.add(node_id="b", task_queue=queue)
    graph.edges.add(from_node="a", key="next", to_node="b")
    return graph


async def absent(call: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == Code.NOT_FOUND, raised.value.details()
    assert "acme" not in (raised.value.details() or "")  # never "exists elsewhere"


@dataclass
class Home:
    graph: common_pb2.GraphDef
    queue: str
    waiting: str
    """A run whose task is leased, with an activity recorded and a signal kept."""
    ended: str
    """A run that has ended (terminated)."""
    task: common_pb2.Task
    digest: str


async def furnish(api: Api) -> Home:
    queue = unique("q")
    graph = two_nodes(unique("g"), queue=queue)
    await api.workers.RegisterGraph(W.RegisterGraphRequest(graph=graph, namespace=HOME))
    waiting, ended = unique("run"), unique("run")
    for run_id in (waiting, ended):
        start = R.StartRunRequest(run_id=run_id, graph_id=graph.graph_id, input=b'{"n":1}', namespace=HOME)
        await api.runs.StartRun(start)
    await api.runs.TerminateRun(R.TerminateRunRequest(run_id=ended, reason="done", namespace=HOME))
    poll = W.PollTaskRequest(
        worker_id="w1",
        task_queues=[queue],
        graphs=[common_pb2.GraphRef(graph_id=graph.graph_id, version=1)],
        wait=Duration(seconds=5),
        namespace=HOME,
    )
    task = (await api.workers.PollTask(poll)).task
    assert task.run_id == waiting
    assert (task.namespace.tenant, task.namespace.project) == ("acme", "web")
    record = common_pb2.Activity(seq=0, kind="call", name="charge", request_hash="h", result=b"1")
    await api.workers.RecordActivity(
        W.RecordActivityRequest(worker_id="w1", task_token=task.task_token, activity=record)
    )
    await api.runs.SignalRun(R.SignalRunRequest(run_id=waiting, name="go", payload=b"1", namespace=HOME))

    async def chunks() -> AsyncIterator[W.PutArtifactRequest]:
        yield W.PutArtifactRequest(run_id=waiting, media_type="text/plain", chunk=b"secret", namespace=HOME)

    digest = (await api.workers.PutArtifact(chunks())).artifact.digest
    return Home(graph, queue, waiting, ended, task, digest)


async def snapshot(api: Api, home: Home) -> list[Any]:
    """Everything the home namespace shows of its resources."""
    seen: list[Any] = []
    for run_id in (home.waiting, home.ended):
        run = (await api.runs.GetRun(R.GetRunRequest(run_id=run_id, namespace=HOME))).run
        run.ClearField("progress")  # a live view (its summary counts down to a timer), not stored state
        seen.append(run)
        seen.append(list((await api.runs.GetHistory(R.GetHistoryRequest(run_id=run_id, namespace=HOME))).steps))
    seen.append((await api.workers.GetGraph(W.GetGraphRequest(graph_id=home.graph.graph_id, namespace=HOME))).graph)
    parts = api.workers.GetArtifact(W.GetArtifactRequest(digest=home.digest, namespace=HOME))
    seen.append(b"".join([r.chunk async for r in parts]))
    return seen


async def test_nothing_of_a_namespace_exists_for_another(api: Api) -> None:
    home = await furnish(api)
    before = await snapshot(api, home)
    graph_id, run_id = home.graph.graph_id, home.waiting

    # RunService: every call naming the home namespace's runs finds nothing.
    await absent(api.runs.GetRun(R.GetRunRequest(run_id=run_id, namespace=AWAY)))
    await absent(api.runs.WaitRun(R.WaitRunRequest(run_id=run_id, timeout=Duration(seconds=1), namespace=AWAY)))
    await absent(api.runs.GetHistory(R.GetHistoryRequest(run_id=run_id, namespace=AWAY)))
    await absent(api.runs.ForkRun(R.ForkRunRequest(run_id=run_id, from_step=0, namespace=AWAY)))
    await absent(api.runs.TerminateRun(R.TerminateRunRequest(run_id=run_id, namespace=AWAY)))
    await absent(api.runs.SignalRun(R.SignalRunRequest(run_id=run_id, name="go", namespace=AWAY)))
    await absent(api.runs.CancelRun(R.CancelRunRequest(run_id=run_id, namespace=AWAY)))
    await absent(api.runs.StartRun(R.StartRunRequest(graph_id=graph_id, namespace=AWAY)))  # its graph too
    listed = await api.runs.ListRuns(R.ListRunsRequest(namespace=AWAY, page_size=1000))
    assert {r.run_id for r in listed.runs}.isdisjoint({home.waiting, home.ended})
    pruned = await api.runs.PruneRuns(R.PruneRunsRequest(older_than=Duration(nanos=1000), namespace=AWAY))
    assert pruned.runs == 0  # the home namespace's ended run is not the other's to prune

    # WorkerService: graphs, queues, tasks and artifacts of the home namespace are not there.
    await absent(api.workers.GetGraph(W.GetGraphRequest(graph_id=graph_id, namespace=AWAY)))
    graphs = await api.workers.ListGraphs(W.ListGraphsRequest(namespace=AWAY, page_size=1000))
    assert graph_id not in {g.graph_id for g in graphs.graphs}
    poll = W.PollTaskRequest(
        worker_id="w2",
        task_queues=[home.queue],
        graphs=[common_pb2.GraphRef(graph_id=graph_id, version=1)],
        wait=Duration(nanos=200_000_000),
        namespace=AWAY,
    )
    assert not (await api.workers.PollTask(poll)).HasField("task")
    await absent(api.workers.GetArtifact(W.GetArtifactRequest(digest=home.digest, namespace=AWAY)).read())

    async def chunks() -> AsyncIterator[W.PutArtifactRequest]:
        yield W.PutArtifactRequest(run_id=run_id, chunk=b"x", namespace=AWAY)

    await absent(api.workers.PutArtifact(chunks()))
    # A token edited to name the other namespace names a task that does not exist there.
    task = home.task
    ref = TaskRef(Namespace("other", "web"), task.run_id, 0, task.attempt, "a", graph_id, 1)
    forged: dict[str, Any] = {"worker_id": "w1", "task_token": encode_task_token(ref)}
    record = common_pb2.Activity(seq=1, kind="call", name="x", request_hash="h", result=b"2")
    stale = [
        api.workers.HeartbeatTask(W.HeartbeatTaskRequest(**forged)),
        api.workers.RecordActivity(W.RecordActivityRequest(**forged, activity=record)),
        api.workers.CompleteTask(W.CompleteTaskRequest(**forged, state=b"{}", next_key="next")),
        api.workers.FailTask(W.FailTaskRequest(**forged, failure=common_pb2.Failure(message="x"))),
        api.workers.SuspendTask(W.SuspendTaskRequest(**forged, wait=W.WaitRequest(seq=1, kind="signal", name="go"))),
    ]
    for call in stale:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() in (Code.FAILED_PRECONDITION, Code.NOT_FOUND), raised.value.details()

    assert await snapshot(api, home) == before, "a call from another namespace changed something"
    # The home task is still leased to w1 and completes.
    done = W.CompleteTaskRequest(worker_id="w1", task_token=task.task_token, state=b'{"n":2}', next_key="next")
    assert (await api.workers.CompleteTask(done)).run_status == common_pb2.RUN_STATUS_RUNNING


async def test_the_same_ids_live_apart_in_two_namespaces(api: Api) -> None:
    queue, graph_id, run_id = unique("q"), unique("g"), unique("run")
    # Two definitions of one graph id and version, and a run id used in both: no conflict.
    for namespace, retries in ((HOME, 3), (AWAY, 7)):
        graph = two_nodes(graph_id, queue=queue, retries=retries)
        created = await api.workers.RegisterGraph(W.RegisterGraphRequest(graph=graph, namespace=namespace))
        assert created.created
        start = R.StartRunRequest(run_id=run_id, graph_id=graph_id, input=b'{"ns":%d}' % retries, namespace=namespace)
        assert (await api.runs.StartRun(start)).created
    for namespace, retries in ((HOME, 3), (AWAY, 7)):
        got = await api.workers.GetGraph(W.GetGraphRequest(graph_id=graph_id, namespace=namespace))
        assert got.graph.nodes[0].retry.max_attempts == retries
        run = (await api.runs.GetRun(R.GetRunRequest(run_id=run_id, namespace=namespace))).run
        assert (run.input, run.namespace) == (b'{"ns":%d}' % retries, namespace)
    # A worker of one namespace takes only that namespace's task from the shared queue name.
    for namespace, retries in ((AWAY, 7), (HOME, 3)):
        poll = W.PollTaskRequest(
            worker_id="w",
            task_queues=[queue],
            graphs=[common_pb2.GraphRef(graph_id=graph_id, version=1)],
            wait=Duration(seconds=5),
            namespace=namespace,
        )
        task = (await api.workers.PollTask(poll)).task
        assert (task.run_id, task.state, task.namespace) == (run_id, b'{"ns":%d}' % retries, namespace)
        again = replace_wait(poll)
        assert not (await api.workers.PollTask(again)).HasField("task")
    # Cancelling one leaves the other as it was.
    await api.runs.CancelRun(R.CancelRunRequest(run_id=run_id, namespace=AWAY))
    home = (await api.runs.GetRun(R.GetRunRequest(run_id=run_id, namespace=HOME))).run
    away = (await api.runs.GetRun(R.GetRunRequest(run_id=run_id, namespace=AWAY))).run
    assert (home.cancel_requested, away.cancel_requested) == (False, True)


def replace_wait(poll: W.PollTaskRequest) -> W.PollTaskRequest:
    short = W.PollTaskRequest()
    short.CopyFrom(poll)
    short.wait.CopyFrom(Duration(nanos=100_000_000))
    return short


@pytest.mark.parametrize(
    ("tenant", "project", "field"),
    [
        ("Acme", "web", "namespace.tenant"),
        ("acme", "a/b", "namespace.project"),
        ("acme", "a.b", "namespace.project"),
        ("-acme", "web", "namespace.tenant"),
        ("a" * 64, "web", "namespace.tenant"),
        ("acme", "w\x00b", "namespace.project"),
    ],
)
async def test_a_malformed_namespace_is_invalid_naming_its_part(api: Api, tenant: str, project: str, field: str):
    namespace = common_pb2.Namespace(tenant=tenant, project=project)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await api.runs.GetRun(R.GetRunRequest(run_id="r", namespace=namespace))
    assert raised.value.code() == Code.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith(field), raised.value.details()
    assert len(raised.value.details() or "") < 300


async def test_an_empty_namespace_is_the_default_one(api: Api) -> None:
    graph = two_nodes(unique("g"), queue=unique("q"))
    await api.workers.RegisterGraph(W.RegisterGraphRequest(graph=graph))  # no namespace at all
    run_id = unique("run")
    await api.runs.StartRun(R.StartRunRequest(run_id=run_id, graph_id=graph.graph_id))
    for namespace in (common_pb2.Namespace(), common_pb2.Namespace(tenant="default", project="default")):
        run = (await api.runs.GetRun(R.GetRunRequest(run_id=run_id, namespace=namespace))).run
        assert (run.namespace.tenant, run.namespace.project) == ("default", "default")
