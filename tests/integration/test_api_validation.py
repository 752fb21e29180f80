"""Bad input to every RPC: the right status, a message naming the field, and nothing half-written.

One in-process server per backend serves the whole module (each test isolates itself with its own
graph id and run ids), with a small payload limit so size limits are cheap to hit. Every rejected
call is also checked for leaks: no traceback and no exception class path in the message, and no
error logged by the server (an error log means a request reached the "internal error" path).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf.duration_pb2 import Duration

from cmo._session import SessionStub, WorkerSession
from cmo.api.v1 import common_pb2, run_service_pb2, run_service_pb2_grpc, worker_service_pb2, worker_service_pb2_grpc
from cmo_server.api._task_token import encode_task_token
from cmo_server.app import CmoServer
from cmo_server.config import BlobConfig, EngineLimits, ServerConfig, StoreConfig
from cmo_server.domain import Namespace, TaskRef
from tests.support.postgres import create_database, drop_database

pytestmark = pytest.mark.asyncio(loop_scope="module")

LIMIT = 4096
"""max_payload_bytes of the server under test."""
LONG_ID = "x" * 129
"""One character over the identifier limit."""
Code = grpc.StatusCode
# A dotted path ending in an exception class: google.protobuf.message.DecodeError, sqlite3.OperationalError …
CLASS_PATH = re.compile(r"\b[A-Za-z_]\w*(?:\.\w+)*\.[A-Z]\w*(?:Error|Exception|Exit|Interrupt)\b")


# -- fixtures -----------------------------------------------------------------------------------


class SessionWorkers:
    """A WorkerService stub whose task calls go on one worker session (the SDK's), the rest unary.

    The validation tests run through it as well as through the plain stub: both paths must check
    and answer every call alike.
    """

    def __init__(self, stub: worker_service_pb2_grpc.WorkerServiceStub) -> None:
        self._stub = stub
        self.session = WorkerSession(stub, on_cancel=lambda token: None)
        calls = SessionStub(self.session, stub)
        self.PollTask = calls.PollTask
        self.RecordActivity = calls.RecordActivity
        self.HeartbeatTask = calls.HeartbeatTask
        self.CompleteTask = calls.CompleteTask
        self.FailTask = calls.FailTask
        self.SuspendTask = calls.SuspendTask

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stub, name)


@dataclass
class Api:
    """Stubs on a running server."""

    runs: run_service_pb2_grpc.RunServiceStub
    workers: worker_service_pb2_grpc.WorkerServiceStub
    channel: grpc.aio.Channel


BACKENDS_AND_CALLS = [
    pytest.param(("sqlite", "unary"), id="sqlite"),
    pytest.param(("sqlite", "session"), id="sqlite-session"),
    pytest.param(("postgres", "unary"), marks=pytest.mark.postgres, id="postgres"),
    pytest.param(("postgres", "session"), marks=pytest.mark.postgres, id="postgres-session"),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=BACKENDS_AND_CALLS)
async def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    """A server per backend, its task calls made unary or on a worker session."""
    backend, calls = request.param
    limits = EngineLimits(max_payload_bytes=LIMIT, task_lease=timedelta(seconds=30))
    server_url = database = ""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("api") / "cmo.db"
        config = ServerConfig(listen="127.0.0.1:0", store=StoreConfig(sqlite_path=str(path)), limits=limits)
    else:
        server_url = request.getfixturevalue("postgres_server")
        database = await asyncio.to_thread(create_database, server_url)
        config = ServerConfig(
            listen="127.0.0.1:0",
            store=StoreConfig(database_url=database, pool_size=4),
            blob=BlobConfig(dir=str(tmp_path_factory.mktemp("blobs"))),
            limits=limits,
        )
    try:
        async with CmoServer.running(config) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            stub = worker_service_pb2_grpc.WorkerServiceStub(ch)
            if calls == "unary":
                yield Api(run_service_pb2_grpc.RunServiceStub(ch), stub, ch)
                return
            workers = SessionWorkers(stub)
            try:
                yield Api(run_service_pb2_grpc.RunServiceStub(ch), workers, ch)  # type: ignore[arg-type]
            finally:
                await workers.session.aclose()
    finally:
        if database:
            await asyncio.to_thread(drop_database, server_url, database)


@pytest.fixture(autouse=True)
def no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Bad input is the client's problem: the server must not log an error (an INTERNAL path) for it."""
    with caplog.at_level(logging.WARNING, logger="cmo_server"):
        yield
    logged = caplog.get_records("call")  # caplog.records would be this teardown's only
    errors = [r.getMessage() for r in logged if r.levelno >= logging.ERROR and r.name.startswith("cmo_server")]
    assert not errors, f"the server logged errors: {errors}"


@pytest_asyncio.fixture(loop_scope="module")
async def graph(api: Api) -> common_pb2.GraphDef:
    """A fresh two-node graph (a -next-> b -> END), registered."""
    definition = two_nodes(unique("g"))
    await api.workers.RegisterGraph(worker_service_pb2.RegisterGraphRequest(graph=definition), timeout=10)
    return definition


# -- helpers ------------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def two_nodes(graph_id: str, version: int = 1) -> common_pb2.GraphDef:
    definition = common_pb2.GraphDef(graph_id=graph_id, version=version, entry_node="a")
    definition.nodes.add(node_id="a")
    definition.nodes.add(node_id="b")
    definition.edges.add(from_node="a", key="next", to_node="b")
    return definition


def assert_safe(message: str) -> None:
    """No internals leak into a status message."""
    assert "Traceback" not in message, message
    assert not CLASS_PATH.search(message), f"an exception class path leaks: {message}"


async def rejected(call: Awaitable[Any], code: grpc.StatusCode, field: str = "") -> str:
    """Await a call that must fail with `code`; its message must start with `field` when given."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    details = raised.value.details() or ""
    assert raised.value.code() == code, f"{raised.value.code().name}: {details}"
    assert details, "a rejection must say why"
    if field:
        assert details.startswith(f"{field}:"), f"the message does not name {field!r}: {details}"
    assert_safe(details)
    return details


async def runs_of(api: Api, graph_id: str) -> list[common_pb2.Run]:
    response = await api.runs.ListRuns(run_service_pb2.ListRunsRequest(graph_id=graph_id), timeout=10)
    return list(response.runs)


async def start(api: Api, graph: common_pb2.GraphDef, *, input: bytes = b"{}") -> str:
    run_id = unique("run")
    request = run_service_pb2.StartRunRequest(run_id=run_id, graph_id=graph.graph_id, input=input)
    await api.runs.StartRun(request, timeout=10)
    return run_id


async def claim(api: Api, graph: common_pb2.GraphDef, *, worker_id: str = "w1") -> common_pb2.Task:
    request = worker_service_pb2.PollTaskRequest(
        worker_id=worker_id,
        task_queues=["default"],
        graphs=[common_pb2.GraphRef(graph_id=graph.graph_id, version=graph.version)],
        wait=Duration(seconds=5),
    )
    response = await api.workers.PollTask(request, timeout=10)
    assert response.HasField("task"), "no task to claim"
    task: common_pb2.Task = response.task
    return task


TOKEN_FIELDS = {"run_id", "step_index", "attempt", "node_id", "graph_id", "graph_version"}


def task_call(task: common_pb2.Task, **changes: Any) -> dict[str, Any]:
    """worker_id and task_token of a call about `task` by w1, its holder; changes to the fields the
    token names (run_id, step_index, attempt, node_id, graph_id, graph_version) forge a token for them."""
    forged = {k: changes.pop(k) for k in list(changes) if k in TOKEN_FIELDS}
    token = task.task_token
    if forged:
        ns = Namespace(task.namespace.tenant, task.namespace.project)
        ref = TaskRef(ns, task.run_id, task.step_index, task.attempt, task.node_id, task.graph_id, task.graph_version)
        token = encode_task_token(replace(ref, **forged))
    return {"worker_id": "w1", "task_token": token, **changes}


def completion(task: common_pb2.Task, **changes: Any) -> worker_service_pb2.CompleteTaskRequest:
    """The CompleteTask the task's own attempt would send (to END from b, to b from a), with changes."""
    fields: dict[str, Any] = {
        "state": b'{"done":1}',
        "next_key": "next" if task.node_id == "a" else "__end__",
        **changes,
    }
    return worker_service_pb2.CompleteTaskRequest(**task_call(task, **fields))


async def snapshot(api: Api, run_id: str) -> tuple[common_pb2.Run, list[common_pb2.Step]]:
    run = (await api.runs.GetRun(run_service_pb2.GetRunRequest(run_id=run_id), timeout=10)).run
    run.ClearField("progress")  # a live view (its summary counts down to a lease's end), not stored state
    history = await api.runs.GetHistory(run_service_pb2.GetHistoryRequest(run_id=run_id), timeout=10)
    return run, list(history.steps)


def nested(depth: int) -> bytes:
    return b'{"a":' + b"[" * depth + b"]" * depth + b"}"


# -- garbage on the wire ------------------------------------------------------------------------

# Methods of the contract this server does not serve yet (grpc answers UNIMPLEMENTED).
UNSERVED: set[str] = set()

METHODS = [
    (service.full_name, method.name)
    for service in (
        run_service_pb2.DESCRIPTOR.services_by_name["RunService"],
        worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"],
    )
    for method in service.methods
    if method.name not in UNSERVED
]


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[m for _, m in METHODS])
@pytest.mark.parametrize(
    "body",
    [b"\xff\xff\xff\xff", b"\x0a\x01\xff", b"\x0a\xff\xff\xff\xff\x0f"],
    ids=["bad-tag", "bad-utf8-string", "truncated-length"],
)
async def test_garbage_request_bytes_are_invalid_argument_not_unknown(
    api: Api, service: str, method: str, body: bytes
) -> None:
    raw = api.channel.unary_unary(
        f"/{service}/{method}", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    if method == "Session" and body == b"\x0a\x01\xff":
        # Field 1 of a SessionRequest is a number, so this decodes (an unknown field) to a message
        # naming no call: the session answers that call, and goes on.
        answer = worker_service_pb2.SessionResponse.FromString(await raw(body, timeout=10))
        assert answer.error.code == Code.INVALID_ARGUMENT.value[0]
        assert answer.error.message.startswith("call:")
        return
    details = await rejected(raw(body, timeout=10), Code.INVALID_ARGUMENT)
    assert f"{method}Request" in details


async def test_an_oversized_message_is_resource_exhausted(api: Api) -> None:
    raw = api.channel.unary_unary(
        "/cmo.api.v1.RunService/StartRun", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    body = run_service_pb2.StartRunRequest(graph_id="g", input=b"x" * (2 * LIMIT + 2 * 1024 * 1024)).SerializeToString()
    await rejected(raw(body, timeout=10), Code.RESOURCE_EXHAUSTED)


# -- RunService ---------------------------------------------------------------------------------

BAD_STARTS: list[tuple[str, dict[str, Any], grpc.StatusCode, str]] = [
    ("empty-graph-id", {"graph_id": ""}, Code.INVALID_ARGUMENT, "graph_id"),
    ("overlong-graph-id", {"graph_id": LONG_ID}, Code.INVALID_ARGUMENT, "graph_id"),
    ("overlong-run-id", {"run_id": LONG_ID}, Code.INVALID_ARGUMENT, "run_id"),
    ("run-id-with-space", {"run_id": "a b"}, Code.INVALID_ARGUMENT, "run_id"),
    ("run-id-with-nul", {"run_id": "a\x00b"}, Code.INVALID_ARGUMENT, "run_id"),
    ("negative-version", {"graph_version": -1}, Code.INVALID_ARGUMENT, "graph_version"),
    ("wait-too-long", {"wait_for_result": Duration(seconds=61)}, Code.INVALID_ARGUMENT, "wait_for_result"),
    ("negative-wait", {"wait_for_result": Duration(seconds=-1)}, Code.INVALID_ARGUMENT, "wait_for_result"),
    ("oversized-input", {"input": b'{"a":"' + b"x" * LIMIT + b'"}'}, Code.RESOURCE_EXHAUSTED, "input"),
    ("malformed-input", {"input": b'{"a":'}, Code.INVALID_ARGUMENT, "input"),
    ("input-not-an-object", {"input": b"[1,2]"}, Code.INVALID_ARGUMENT, "input"),
    ("input-not-utf8", {"input": b'{"a":"\xff"}'}, Code.INVALID_ARGUMENT, "input"),
    ("input-nan", {"input": b'{"a":NaN}'}, Code.INVALID_ARGUMENT, "input"),
    ("input-float-overflow", {"input": b'{"a":1e400}'}, Code.INVALID_ARGUMENT, "input"),
    ("input-lone-surrogate", {"input": b'{"a":"\\ud800"}'}, Code.INVALID_ARGUMENT, "input"),
    ("input-too-deep", {"input": nested(1500)}, Code.INVALID_ARGUMENT, "input"),
]


@pytest.mark.parametrize(("changes", "code", "field"), [c[1:] for c in BAD_STARTS], ids=[c[0] for c in BAD_STARTS])
async def test_start_run_rejects_bad_input_and_creates_no_run(
    api: Api, graph: common_pb2.GraphDef, changes: dict[str, Any], code: grpc.StatusCode, field: str
) -> None:
    run_id = unique("run")
    request = run_service_pb2.StartRunRequest(**{"run_id": run_id, "graph_id": graph.graph_id, **changes})
    await rejected(api.runs.StartRun(request, timeout=10), code, field)
    assert await runs_of(api, graph.graph_id) == []
    await rejected(api.runs.GetRun(run_service_pb2.GetRunRequest(run_id=run_id), timeout=10), Code.NOT_FOUND)


async def test_start_run_of_an_unknown_graph_or_version_is_not_found(api: Api, graph: common_pb2.GraphDef) -> None:
    unknown = unique("nope")
    details = await rejected(
        api.runs.StartRun(run_service_pb2.StartRunRequest(graph_id=unknown), timeout=10), Code.NOT_FOUND
    )
    assert unknown in details
    request = run_service_pb2.StartRunRequest(graph_id=graph.graph_id, graph_version=7)
    details = await rejected(api.runs.StartRun(request, timeout=10), Code.NOT_FOUND)
    assert graph.graph_id in details
    assert "version 7" in details
    assert await runs_of(api, graph.graph_id) == []
    assert await runs_of(api, unknown) == []


async def test_start_run_is_idempotent_on_run_id(api: Api, graph: common_pb2.GraphDef) -> None:
    run_id = unique("run")
    first = run_service_pb2.StartRunRequest(run_id=run_id, graph_id=graph.graph_id, input=b'{"n": 1}')
    created = await api.runs.StartRun(first, timeout=10)
    assert created.created
    assert created.run.input == b'{"n":1}'

    again = await api.runs.StartRun(first, timeout=10)
    assert not again.created
    assert again.run == created.run
    # Another input under the same run_id is another run: refused, the first start stays.
    other = run_service_pb2.StartRunRequest(run_id=run_id, graph_id=graph.graph_id, input=b'{"n": 2}')
    await rejected(api.runs.StartRun(other, timeout=10), Code.ALREADY_EXISTS, "run_id")
    # A bad start under the same run_id is refused and leaves the run alone.
    bad = run_service_pb2.StartRunRequest(run_id=run_id, graph_id=graph.graph_id, input=b"{")
    await rejected(api.runs.StartRun(bad, timeout=10), Code.INVALID_ARGUMENT, "input")

    assert [r.run_id for r in await runs_of(api, graph.graph_id)] == [run_id]
    task = await claim(api, graph)
    assert (task.run_id, task.step_index, task.attempt, task.state) == (run_id, 0, 1, b'{"n":1}')


async def test_get_run_rejects_bad_ids(api: Api) -> None:
    for run_id in ("", LONG_ID, "tab\there"):
        request = run_service_pb2.GetRunRequest(run_id=run_id)
        await rejected(api.runs.GetRun(request, timeout=10), Code.INVALID_ARGUMENT, "run_id")
    unknown = unique("run")
    details = await rejected(api.runs.GetRun(run_service_pb2.GetRunRequest(run_id=unknown), timeout=10), Code.NOT_FOUND)
    assert unknown in details


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"status": 99}, "status", id="unknown-status"),
        pytest.param({"status": -1}, "status", id="negative-status"),
        pytest.param({"page_size": 1001}, "page_size", id="page-too-large"),
        pytest.param({"page_size": -1}, "page_size", id="negative-page"),
        pytest.param({"graph_id": LONG_ID}, "graph_id", id="overlong-graph-id"),
        pytest.param({"page_token": "not a token!"}, "page_token", id="garbage-token"),
        # base64 of "é": decodes, but holds no created_at:run_id pair
        pytest.param({"page_token": "w6k="}, "page_token", id="token-without-separator"),
        pytest.param({"id_prefix": LONG_ID}, "id_prefix", id="overlong-id-prefix"),
        pytest.param({"id_prefix": "a b"}, "id_prefix", id="id-prefix-with-space"),
        # A newest-first listing's token (created_at:run_id) does not page a search by id.
        pytest.param({"id_prefix": "a", "page_token": "MTc2NDY0MTA5OTUxMjAwMDpy"}, "page_token", id="foreign-token"),
    ],
)
async def test_list_runs_rejects_bad_input(api: Api, changes: dict[str, Any], field: str) -> None:
    request = run_service_pb2.ListRunsRequest(**changes)
    await rejected(api.runs.ListRuns(request, timeout=10), Code.INVALID_ARGUMENT, field)


async def test_list_runs_rejects_a_forged_token_with_a_huge_number(api: Api) -> None:
    import base64

    forged = base64.urlsafe_b64encode(b"9" * 40 + b":run").decode()
    request = run_service_pb2.ListRunsRequest(page_token=forged)
    await rejected(api.runs.ListRuns(request, timeout=10), Code.INVALID_ARGUMENT, "page_token")


async def test_wait_run_rejects_bad_input(api: Api, graph: common_pb2.GraphDef) -> None:
    run_id = await start(api, graph)
    request = run_service_pb2.WaitRunRequest(run_id="")
    await rejected(api.runs.WaitRun(request, timeout=10), Code.INVALID_ARGUMENT, "run_id")
    request = run_service_pb2.WaitRunRequest(run_id=unique("run"), timeout=Duration(seconds=1))
    await rejected(api.runs.WaitRun(request, timeout=10), Code.NOT_FOUND)
    for timeout in (Duration(seconds=61), Duration(seconds=-1), Duration(seconds=0, nanos=-5)):
        request = run_service_pb2.WaitRunRequest(run_id=run_id, timeout=timeout)
        await rejected(api.runs.WaitRun(request, timeout=10), Code.INVALID_ARGUMENT, "timeout")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"run_id": ""}, "run_id", id="empty-run-id"),
        pytest.param({"run_id": LONG_ID}, "run_id", id="overlong-run-id"),
        pytest.param({"page_size": 1001}, "page_size", id="page-too-large"),
        pytest.param({"page_size": -5}, "page_size", id="negative-page"),
        pytest.param({"page_token": "abc"}, "page_token", id="garbage-token"),
        pytest.param({"page_token": "-1"}, "page_token", id="negative-token"),
        pytest.param({"page_token": "12345678901"}, "page_token", id="overlong-token"),
        # "²": str.isdigit() says yes, int() says no
        pytest.param({"page_token": "\u00b2"}, "page_token", id="superscript-digit-token"),
    ],
)
async def test_get_history_rejects_bad_input(
    api: Api, graph: common_pb2.GraphDef, changes: dict[str, Any], field: str
) -> None:
    request = run_service_pb2.GetHistoryRequest(run_id=await start(api, graph))
    for name, value in changes.items():
        setattr(request, name, value)
    await rejected(api.runs.GetHistory(request, timeout=10), Code.INVALID_ARGUMENT, field)


async def test_get_history_of_an_unknown_run_is_not_found(api: Api) -> None:
    unknown = unique("run")
    request = run_service_pb2.GetHistoryRequest(run_id=unknown)
    assert unknown in await rejected(api.runs.GetHistory(request, timeout=10), Code.NOT_FOUND)


# -- WorkerService: RegisterGraph ---------------------------------------------------------------


BAD_GRAPHS: list[tuple[str, Callable[[common_pb2.GraphDef], object], str]] = [
    ("empty-graph-id", lambda g: setattr(g, "graph_id", ""), "graph.graph_id"),
    ("overlong-graph-id", lambda g: setattr(g, "graph_id", LONG_ID), "graph.graph_id"),
    ("version-0", lambda g: setattr(g, "version", 0), "graph.version"),
    ("no-nodes", lambda g: g.ClearField("nodes"), "graph.nodes"),
    ("missing-entry", lambda g: setattr(g, "entry_node", ""), "graph.entry_node"),
    ("entry-unknown", lambda g: setattr(g, "entry_node", "zzz"), "graph.entry_node"),
    ("edge-to-unknown-node", lambda g: setattr(g.edges[0], "to_node", "zzz"), "graph.edges[0].to_node"),
    ("edge-from-unknown-node", lambda g: setattr(g.edges[0], "from_node", "zzz"), "graph.edges[0].from_node"),
    ("empty-edge-key", lambda g: setattr(g.edges[0], "key", ""), "graph.edges[0].key"),
    ("reserved-edge-key", lambda g: setattr(g.edges[0], "key", "__end__"), "graph.edges[0].key"),
    ("duplicate-edge-key", lambda g: g.edges.add(from_node="a", key="next", to_node="a"), "graph.edges[1].key"),
    ("duplicate-node", lambda g: g.nodes.add(node_id="a"), "graph.nodes[2].node_id"),
    ("node-named-end", lambda g: setattr(g.nodes[1], "node_id", "__end__"), "graph.nodes[1].node_id"),
    ("empty-node-id", lambda g: setattr(g.nodes[1], "node_id", ""), "graph.nodes[1].node_id"),
    ("overlong-task-queue", lambda g: setattr(g.nodes[0], "task_queue", LONG_ID), "graph.nodes[0].task_queue"),
    ("negative-max-attempts", lambda g: setattr(g.nodes[0].retry, "max_attempts", -1),
     "graph.nodes[0].retry.max_attempts"),
    ("backoff-below-1", lambda g: setattr(g.nodes[0].retry, "backoff", 0.5), "graph.nodes[0].retry.backoff"),
    ("backoff-nan", lambda g: setattr(g.nodes[0].retry, "backoff", math.nan), "graph.nodes[0].retry.backoff"),
    ("backoff-infinite", lambda g: setattr(g.nodes[0].retry, "backoff", math.inf), "graph.nodes[0].retry.backoff"),
    ("negative-interval", lambda g: g.nodes[0].retry.initial_interval.FromTimedelta(timedelta(seconds=-1)),
     "graph.nodes[0].retry.initial_interval"),
]  # fmt: skip


@pytest.mark.parametrize(("edit", "field"), [c[1:] for c in BAD_GRAPHS], ids=[c[0] for c in BAD_GRAPHS])
async def test_register_graph_rejects_bad_definitions_and_registers_nothing(
    api: Api, edit: Callable[[common_pb2.GraphDef], object], field: str
) -> None:
    good = two_nodes(unique("g"))
    definition = common_pb2.GraphDef()
    definition.CopyFrom(good)
    edit(definition)
    request = worker_service_pb2.RegisterGraphRequest(graph=definition)
    await rejected(api.workers.RegisterGraph(request, timeout=10), Code.INVALID_ARGUMENT, field)
    start_it = run_service_pb2.StartRunRequest(graph_id=good.graph_id)
    await rejected(api.runs.StartRun(start_it, timeout=10), Code.NOT_FOUND)
    # The name is still free: the good definition registers as new.
    response = await api.workers.RegisterGraph(worker_service_pb2.RegisterGraphRequest(graph=good), timeout=10)
    assert response.created


async def test_register_graph_without_a_graph_is_invalid(api: Api) -> None:
    request = worker_service_pb2.RegisterGraphRequest()
    await rejected(api.workers.RegisterGraph(request, timeout=10), Code.INVALID_ARGUMENT, "graph")


async def test_a_graph_version_is_immutable(api: Api, graph: common_pb2.GraphDef) -> None:
    same = await api.workers.RegisterGraph(worker_service_pb2.RegisterGraphRequest(graph=graph), timeout=10)
    assert not same.created
    changed = common_pb2.GraphDef()
    changed.CopyFrom(graph)
    changed.edges.add(from_node="b", key="back", to_node="a")
    request = worker_service_pb2.RegisterGraphRequest(graph=changed)
    details = await rejected(api.workers.RegisterGraph(request, timeout=10), Code.ALREADY_EXISTS)
    assert graph.graph_id in details
    assert "version 1" in details
    # The registered definition is still the first one: b has no edge "back".
    run_id = await start(api, graph)
    first = await claim(api, graph)
    await api.workers.CompleteTask(completion(first), timeout=10)
    second = await claim(api, graph)
    assert (second.run_id, second.node_id) == (run_id, "b")
    await rejected(
        api.workers.CompleteTask(completion(second, next_key="back"), timeout=10), Code.INVALID_ARGUMENT, "next_key"
    )


# -- WorkerService: PollTask, HeartbeatTask, FailTask -------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"worker_id": ""}, "worker_id", id="empty-worker-id"),
        pytest.param({"worker_id": LONG_ID}, "worker_id", id="overlong-worker-id"),
        pytest.param({"task_queues": []}, "task_queues", id="no-queues"),
        pytest.param({"task_queues": ["default", ""]}, "task_queues[1]", id="empty-queue"),
        pytest.param({"task_queues": ["q"] * 101}, "task_queues", id="too-many-queues"),
        pytest.param({"graphs": []}, "graphs", id="no-graphs"),
        pytest.param(
            {"graphs": [common_pb2.GraphRef(graph_id="", version=1)]}, "graphs[0].graph_id", id="empty-graph-id"
        ),
        pytest.param({"graphs": [common_pb2.GraphRef(graph_id="g", version=0)]}, "graphs[0].version", id="version-0"),
        pytest.param({"wait": Duration(seconds=61)}, "wait", id="wait-too-long"),
        pytest.param({"wait": Duration(seconds=-1)}, "wait", id="negative-wait"),
    ],
)
async def test_poll_task_rejects_bad_input_and_claims_nothing(
    api: Api, graph: common_pb2.GraphDef, changes: dict[str, Any], field: str
) -> None:
    run_id = await start(api, graph)
    fields: dict[str, Any] = {
        "worker_id": "w1",
        "task_queues": ["default"],
        "graphs": [common_pb2.GraphRef(graph_id=graph.graph_id, version=1)],
        "wait": Duration(seconds=1),
        **changes,
    }
    request = worker_service_pb2.PollTaskRequest(**fields)
    await rejected(api.workers.PollTask(request, timeout=10), Code.INVALID_ARGUMENT, field)
    task = await claim(api, graph)
    assert (task.run_id, task.attempt) == (run_id, 1), "the rejected poll must not have leased the task"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"worker_id": ""}, "worker_id", id="empty-worker-id"),
        pytest.param({"task_token": ""}, "task_token", id="no-token"),
        pytest.param({"task_token": "t1.garbage"}, "task_token", id="garbage-token"),
        pytest.param({"task_token": "t1." + "A" * 3000}, "task_token", id="huge-token"),
        pytest.param({"run_id": ""}, "task_token.run_id", id="empty-run-id"),
        pytest.param({"run_id": LONG_ID}, "task_token.run_id", id="overlong-run-id"),
        pytest.param({"step_index": -1}, "task_token.step_index", id="negative-step"),
        pytest.param({"attempt": 0}, "task_token.attempt", id="attempt-0"),
    ],
)
async def test_heartbeat_and_fail_task_reject_bad_input(
    api: Api, graph: common_pb2.GraphDef, changes: dict[str, Any], field: str
) -> None:
    await start(api, graph)
    task = await claim(api, graph)
    key = task_call(task, **changes)
    beat = worker_service_pb2.HeartbeatTaskRequest(**key)
    await rejected(api.workers.HeartbeatTask(beat, timeout=10), Code.INVALID_ARGUMENT, field)
    fail = worker_service_pb2.FailTaskRequest(**key, failure=common_pb2.Failure(message="boom"))
    await rejected(api.workers.FailTask(fail, timeout=10), Code.INVALID_ARGUMENT, field)
    # Nothing was counted: the attempt still holds its lease and completes.
    await api.workers.CompleteTask(completion(task), timeout=10)
    _, history = await snapshot(api, task.run_id)
    assert [(s.step_index, s.attempt) for s in history] == [(0, 1)]


async def test_stale_heartbeat_and_fail_task_are_failed_precondition(api: Api, graph: common_pb2.GraphDef) -> None:
    await start(api, graph)
    task = await claim(api, graph)
    before = await snapshot(api, task.run_id)
    stale: list[dict[str, Any]] = [
        {"attempt": task.attempt + 1},
        {"step_index": 1},
        {"run_id": unique("run")},
        {"worker_id": "w2"},  # a worker that does not hold the lease
    ]
    for key in stale:
        fields = task_call(task, **key)
        beat = worker_service_pb2.HeartbeatTaskRequest(**fields)
        await rejected(api.workers.HeartbeatTask(beat, timeout=10), Code.FAILED_PRECONDITION)
        fail = worker_service_pb2.FailTaskRequest(**fields, failure=common_pb2.Failure(message="boom"))
        await rejected(api.workers.FailTask(fail, timeout=10), Code.FAILED_PRECONDITION)
    assert await snapshot(api, task.run_id) == before
    await api.workers.CompleteTask(completion(task), timeout=10)


async def test_a_retry_policy_growing_past_any_timestamp_still_retries(api: Api) -> None:
    # Valid but absurd: 1 µs, then 1e308 times longer. The back-off is capped instead of failing
    # FailTask with an overflow (which left the failure uncounted and the step re-run at once).
    definition = two_nodes(unique("g"))
    retry = definition.nodes[0].retry
    retry.max_attempts, retry.backoff = 5, 1e308
    retry.initial_interval.FromTimedelta(timedelta(microseconds=1))
    await api.workers.RegisterGraph(worker_service_pb2.RegisterGraphRequest(graph=definition), timeout=10)
    await start(api, definition)
    for failures in (1, 2):
        task = await claim(api, definition)
        assert task.failures == failures - 1
        request = worker_service_pb2.FailTaskRequest(
            **task_call(task), failure=common_pb2.Failure(message="boom", type="Boom")
        )
        response = await api.workers.FailTask(request, timeout=10)
        assert response.will_retry
    assert timedelta(days=1) < response.retry_after.ToTimedelta() <= timedelta(days=366)


# -- WorkerService: CompleteTask ----------------------------------------------------------------

RECORD = common_pb2.Activity(seq=0, kind="call", name="charge", request_hash="h", result=b"1")
BAD_COMPLETIONS: list[tuple[str, dict[str, Any], grpc.StatusCode, str]] = [
    ("empty-worker-id", {"worker_id": ""}, Code.INVALID_ARGUMENT, "worker_id"),
    ("no-token", {"task_token": ""}, Code.INVALID_ARGUMENT, "task_token"),
    ("garbage-token", {"task_token": "not a token"}, Code.INVALID_ARGUMENT, "task_token"),
    ("empty-run-id", {"run_id": ""}, Code.INVALID_ARGUMENT, "task_token.run_id"),
    ("overlong-run-id", {"run_id": LONG_ID}, Code.INVALID_ARGUMENT, "task_token.run_id"),
    ("negative-step", {"step_index": -1}, Code.INVALID_ARGUMENT, "task_token.step_index"),
    ("attempt-0", {"attempt": 0}, Code.INVALID_ARGUMENT, "task_token.attempt"),
    ("empty-graph-id", {"graph_id": ""}, Code.INVALID_ARGUMENT, "task_token.graph_id"),
    ("version-0", {"graph_version": 0}, Code.INVALID_ARGUMENT, "task_token.graph_version"),
    ("empty-node-id", {"node_id": ""}, Code.INVALID_ARGUMENT, "task_token.node_id"),
    ("unknown-node", {"node_id": "zzz"}, Code.INVALID_ARGUMENT, "task_token.node_id"),
    ("foreign-worker", {"worker_id": "w2"}, Code.FAILED_PRECONDITION, ""),
    ("unknown-edge-key", {"next_key": "nope"}, Code.INVALID_ARGUMENT, "next_key"),
    ("empty-edge-key", {"next_key": ""}, Code.INVALID_ARGUMENT, "next_key"),
    ("malformed-state", {"state": b'{"a":'}, Code.INVALID_ARGUMENT, "state"),
    ("empty-state", {"state": b""}, Code.INVALID_ARGUMENT, "state"),
    ("state-not-an-object", {"state": b'"text"'}, Code.INVALID_ARGUMENT, "state"),
    ("state-not-utf8", {"state": b'{"a":"\xc3"}'}, Code.INVALID_ARGUMENT, "state"),
    ("state-lone-surrogate", {"state": b'{"a":"\\udfff"}'}, Code.INVALID_ARGUMENT, "state"),
    ("state-float-overflow", {"state": b'{"a":-1e999}'}, Code.INVALID_ARGUMENT, "state"),
    ("state-too-deep", {"state": nested(1200)}, Code.INVALID_ARGUMENT, "state"),
    ("oversized-state", {"state": b'{"a":"' + b"x" * LIMIT + b'"}'}, Code.RESOURCE_EXHAUSTED, "state"),
    ("malformed-output", {"output": b"[1,"}, Code.INVALID_ARGUMENT, "output"),
    ("oversized-output", {"output": b'"' + b"x" * LIMIT + b'"'}, Code.RESOURCE_EXHAUSTED, "output"),
    ("empty-eager-queue", {"eager_task_queues": [""]}, Code.INVALID_ARGUMENT, "eager_task_queues[0]"),
    ("activity-seq-twice", {"activities": [RECORD, RECORD]}, Code.INVALID_ARGUMENT, "activities[1].seq"),
    ("unknown-graph", {"graph_id": "no-such-graph"}, Code.NOT_FOUND, ""),
    ("unknown-version", {"graph_version": 9}, Code.NOT_FOUND, ""),
    ("stale-attempt", {"attempt": 2}, Code.FAILED_PRECONDITION, ""),
    ("wrong-step", {"step_index": 1}, Code.FAILED_PRECONDITION, ""),
    ("other-run", {"run_id": "no-such-run"}, Code.FAILED_PRECONDITION, ""),
    ("other-node-to-end", {"node_id": "b", "next_key": "__end__"}, Code.FAILED_PRECONDITION, ""),
]


@pytest.mark.parametrize(
    ("changes", "code", "field"), [c[1:] for c in BAD_COMPLETIONS], ids=[c[0] for c in BAD_COMPLETIONS]
)
async def test_complete_task_rejects_bad_input_writes_nothing_and_the_attempt_still_completes(
    api: Api, graph: common_pb2.GraphDef, changes: dict[str, Any], code: grpc.StatusCode, field: str
) -> None:
    run_id = await start(api, graph)
    task = await claim(api, graph)
    before = await snapshot(api, run_id)
    await rejected(api.workers.CompleteTask(completion(task, **changes), timeout=10), code, field)
    assert await snapshot(api, run_id) == before, "a rejected CompleteTask wrote something"

    response = await api.workers.CompleteTask(completion(task), timeout=10)
    assert response.run_status == common_pb2.RUN_STATUS_RUNNING
    _, history = await snapshot(api, run_id)
    assert [(s.step_index, s.attempt, s.node_id, s.state) for s in history] == [(0, 1, "a", b'{"done":1}')]


async def test_complete_task_with_an_invalid_started_at_is_invalid(api: Api, graph: common_pb2.GraphDef) -> None:
    run_id = await start(api, graph)
    task = await claim(api, graph)
    before = await snapshot(api, run_id)
    for seconds, nanos in ((2**62, 0), (-(2**62), 0), (0, -1)):
        request = completion(task)
        request.started_at.seconds, request.started_at.nanos = seconds, nanos
        await rejected(api.workers.CompleteTask(request, timeout=10), Code.INVALID_ARGUMENT, "started_at")
    assert await snapshot(api, run_id) == before


async def test_a_duplicate_complete_task_is_a_no_op(api: Api, graph: common_pb2.GraphDef) -> None:
    run_id = await start(api, graph)
    task = await claim(api, graph)
    first = await api.workers.CompleteTask(completion(task), timeout=10)
    after_first = await snapshot(api, run_id)

    again = await api.workers.CompleteTask(completion(task), timeout=10)
    assert again.run_status == first.run_status == common_pb2.RUN_STATUS_RUNNING
    assert not again.HasField("next_task")
    # Re-sent with other content, it is refused, and the checkpoint stays what the first call wrote.
    for changed in ({"state": b'{"other":2}'}, {"output": b"1"}, {"next_key": "__end__"}):
        await rejected(api.workers.CompleteTask(completion(task, **changed), timeout=10), Code.FAILED_PRECONDITION)
    assert await snapshot(api, run_id) == after_first

    last = await claim(api, graph)
    assert (last.run_id, last.step_index, last.node_id, last.state) == (run_id, 1, "b", b'{"done":1}')
    done = await api.workers.CompleteTask(completion(last), timeout=10)
    assert done.run_status == common_pb2.RUN_STATUS_COMPLETED
    finished = await snapshot(api, run_id)
    repeat = await api.workers.CompleteTask(completion(last), timeout=10)
    assert repeat.run_status == common_pb2.RUN_STATUS_COMPLETED
    assert await snapshot(api, run_id) == finished
    assert [s.step_index for s in finished[1]] == [0, 1]


async def test_a_resent_checkpoint_frees_the_eager_task_its_lost_reply_carried(
    api: Api, graph: common_pb2.GraphDef
) -> None:
    run_id = await start(api, graph)
    task = await claim(api, graph)
    first = await api.workers.CompleteTask(completion(task, eager_task_queues=["default"]), timeout=10)
    assert (first.next_task.step_index, first.next_task.attempt) == (1, 1)  # leased to w1 in the reply

    # w1 never saw that reply and re-sends: the next task must not sit out its 30 s lease.
    again = await api.workers.CompleteTask(completion(task, eager_task_queues=["default"]), timeout=10)
    assert not again.HasField("next_task")
    freed = await claim(api, graph, worker_id="w2")
    assert (freed.run_id, freed.step_index, freed.attempt) == (run_id, 1, 2)


# -- waits: SuspendTask, SignalRun, CancelRun ----------------------------------------------------


def suspension(task: common_pb2.Task, **wait: Any) -> worker_service_pb2.SuspendTaskRequest:
    return worker_service_pb2.SuspendTaskRequest(**task_call(task), wait=worker_service_pb2.WaitRequest(**wait))


@pytest.mark.parametrize(
    ("wait", "field"),
    [
        ({"kind": "nap", "seq": 0}, "wait.kind"),
        ({"kind": "signal", "seq": -1, "name": "go"}, "wait.seq"),
        ({"kind": "signal", "seq": 0, "name": ""}, "wait.name"),
        ({"kind": "signal", "seq": 0, "name": "has space"}, "wait.name"),
        ({"kind": "timer", "seq": 0, "name": "x", "duration": Duration(seconds=1)}, "wait.name"),
        ({"kind": "timer", "seq": 0}, "wait.duration"),
        ({"kind": "timer", "seq": 0, "duration": Duration(seconds=-1)}, "wait.duration"),
        ({"kind": "timer", "seq": 0, "duration": Duration(seconds=10**10)}, "wait.duration"),
        ({"kind": "timer", "seq": 0, "duration": Duration(seconds=1), "request_hash": "h" * 129}, "wait.request_hash"),
    ],
)
async def test_suspend_task_rejects_a_bad_wait_and_leaves_the_task_leased(
    api: Api, graph: common_pb2.GraphDef, wait: dict[str, Any], field: str
):
    run_id = await start(api, graph)
    task = await claim(api, graph)
    await rejected(api.workers.SuspendTask(suspension(task, **wait), timeout=10), Code.INVALID_ARGUMENT, field)
    run, _ = await snapshot(api, run_id)
    assert run.status == common_pb2.RUN_STATUS_RUNNING
    assert not run.HasField("waiting")
    await api.workers.CompleteTask(completion(task), timeout=10)  # the attempt still holds the task


async def test_suspend_task_without_a_wait_or_by_a_stale_attempt_is_refused(api: Api, graph: common_pb2.GraphDef):
    await start(api, graph)
    task = await claim(api, graph)
    bare = worker_service_pb2.SuspendTaskRequest(**task_call(task))
    await rejected(api.workers.SuspendTask(bare, timeout=10), Code.INVALID_ARGUMENT, "wait")
    stale = suspension(task, kind="signal", seq=0, name="go")
    stale.task_token = task_call(task, attempt=task.attempt + 1)["task_token"]
    await rejected(api.workers.SuspendTask(stale, timeout=10), Code.FAILED_PRECONDITION)
    foreign = suspension(task, kind="signal", seq=0, name="go")
    foreign.worker_id = "w2"
    await rejected(api.workers.SuspendTask(foreign, timeout=10), Code.FAILED_PRECONDITION)
    await api.workers.SuspendTask(suspension(task, kind="signal", seq=0, name="go"), timeout=10)
    # A repeat after the suspension: the attempt no longer holds the task.
    await rejected(
        api.workers.SuspendTask(suspension(task, kind="signal", seq=0, name="go"), timeout=10), Code.FAILED_PRECONDITION
    )
    run, _ = await snapshot(api, task.run_id)
    assert run.status == common_pb2.RUN_STATUS_WAITING
    assert (run.waiting.kind, run.waiting.name, run.waiting.seq) == ("signal", "go", 0)


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"run_id": ""}, Code.INVALID_ARGUMENT, "run_id"),
        ({"name": ""}, Code.INVALID_ARGUMENT, "name"),
        ({"name": LONG_ID}, Code.INVALID_ARGUMENT, "name"),
        ({"request_id": "a b"}, Code.INVALID_ARGUMENT, "request_id"),
        ({"payload": b"{"}, Code.INVALID_ARGUMENT, "payload"),
        ({"payload": b'"' + b"x" * LIMIT + b'"'}, Code.RESOURCE_EXHAUSTED, ""),
        ({"run_id": "no-such-run"}, Code.NOT_FOUND, ""),
    ],
)
async def test_signal_run_rejects_bad_input_and_keeps_nothing(
    api: Api, graph: common_pb2.GraphDef, fields: dict[str, Any], code: grpc.StatusCode, field: str
):
    run_id = await start(api, graph)
    task = await claim(api, graph)
    await api.workers.SuspendTask(suspension(task, kind="signal", seq=0, name="go"), timeout=10)
    request = run_service_pb2.SignalRunRequest(**{"run_id": run_id, "name": "go", **fields})
    await rejected(api.runs.SignalRun(request, timeout=10), code, field)
    run, _ = await snapshot(api, run_id)
    assert run.status == common_pb2.RUN_STATUS_WAITING  # no signal was kept
    good = run_service_pb2.SignalRunRequest(run_id=run_id, name="go", payload=b"1")
    assert (await api.runs.SignalRun(good, timeout=10)).delivered


async def test_signal_to_an_ended_run_is_a_failed_precondition(api: Api, graph: common_pb2.GraphDef):
    run_id = await start(api, graph)
    await api.runs.TerminateRun(run_service_pb2.TerminateRunRequest(run_id=run_id), timeout=10)
    request = run_service_pb2.SignalRunRequest(run_id=run_id, name="go")
    details = await rejected(api.runs.SignalRun(request, timeout=10), Code.FAILED_PRECONDITION)
    assert "has ended" in details


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"run_id": ""}, Code.INVALID_ARGUMENT, "run_id"),
        ({"reason": "r" * 4097}, Code.INVALID_ARGUMENT, "reason"),
        ({"run_id": "no-such-run"}, Code.NOT_FOUND, ""),
    ],
)
async def test_cancel_run_rejects_bad_input_and_changes_nothing(
    api: Api, graph: common_pb2.GraphDef, fields: dict[str, Any], code: grpc.StatusCode, field: str
):
    run_id = await start(api, graph)
    request = run_service_pb2.CancelRunRequest(**{"run_id": run_id, **fields})
    await rejected(api.runs.CancelRun(request, timeout=10), code, field)
    run, _ = await snapshot(api, run_id)
    assert run.status == common_pb2.RUN_STATUS_PENDING
    assert not run.cancel_requested


# -- WorkerService: the task contract (token, lease holder, explicit outcomes) ------------------


async def test_fail_task_with_one_bad_riding_record_stores_none_of_them(api: Api, graph: common_pb2.GraphDef) -> None:
    await start(api, graph)
    task = await claim(api, graph)
    good = common_pb2.Activity(seq=0, kind="call", name="charge", request_hash="h", result=b"1")
    for bad, field in (
        (
            common_pb2.Activity(seq=1, kind="call", name="ship", request_hash="h"),
            "activities[1]",
        ),  # no result, no error
        (common_pb2.Activity(seq=1, kind="call", name="ship", request_hash="h", result=b"{"), "activities[1].result"),
    ):
        request = worker_service_pb2.FailTaskRequest(
            **task_call(task), failure=common_pb2.Failure(message="boom"), activities=[good, bad]
        )
        await rejected(api.workers.FailTask(request, timeout=10), Code.INVALID_ARGUMENT, field)
    # The attempt still holds the task and nothing rode in: it completes with no record at seq 0.
    await api.workers.CompleteTask(completion(task), timeout=10)
    _, history = await snapshot(api, task.run_id)
    assert [list(s.activities) for s in history] == [[]]


async def test_fail_task_needs_a_failure_unless_it_releases_or_cancels(api: Api, graph: common_pb2.GraphDef) -> None:
    await start(api, graph)
    task = await claim(api, graph)
    bare = worker_service_pb2.FailTaskRequest(**task_call(task))
    await rejected(api.workers.FailTask(bare, timeout=10), Code.INVALID_ARGUMENT, "failure")
    both = worker_service_pb2.FailTaskRequest(**task_call(task), release=True, cancelled=True)
    await rejected(api.workers.FailTask(both, timeout=10), Code.INVALID_ARGUMENT, "cancelled")
    released = await api.workers.FailTask(worker_service_pb2.FailTaskRequest(**task_call(task), release=True))
    assert released.will_retry
    again = await claim(api, graph)
    assert (again.attempt, again.failures) == (task.attempt + 1, 0)


async def test_cancellation_is_an_explicit_outcome_of_fail_task(api: Api, graph: common_pb2.GraphDef) -> None:
    run_id = await start(api, graph)
    task = await claim(api, graph)
    failure = common_pb2.Failure(message="stopped", type="RunCancelledError")
    # Claiming a cancellation nobody asked for is refused, and changes nothing.
    early = worker_service_pb2.FailTaskRequest(**task_call(task), failure=failure, cancelled=True)
    await rejected(api.workers.FailTask(early, timeout=10), Code.FAILED_PRECONDITION)
    run, _ = await snapshot(api, run_id)
    assert run.status == common_pb2.RUN_STATUS_RUNNING

    await api.runs.CancelRun(run_service_pb2.CancelRunRequest(run_id=run_id, reason="enough"), timeout=10)
    beat = await api.workers.HeartbeatTask(worker_service_pb2.HeartbeatTaskRequest(**task_call(task)), timeout=10)
    assert beat.cancel_requested
    # The failure's type is free text: the flag, not a magic string, ends the run CANCELLED.
    done = worker_service_pb2.FailTaskRequest(
        **task_call(task), failure=common_pb2.Failure(message="cleaned up", type="Whatever"), cancelled=True
    )
    response = await api.workers.FailTask(done, timeout=10)
    assert (response.will_retry, response.run_status) == (False, common_pb2.RUN_STATUS_CANCELLED)
    run, _ = await snapshot(api, run_id)
    assert (run.status, run.failure.message) == (common_pb2.RUN_STATUS_CANCELLED, "cleaned up")


async def test_a_failure_of_a_run_being_cancelled_ends_it_cancelled_not_retried(
    api: Api, graph: common_pb2.GraphDef
) -> None:
    run_id = await start(api, graph)
    task = await claim(api, graph)
    await api.runs.CancelRun(run_service_pb2.CancelRunRequest(run_id=run_id), timeout=10)
    fail = worker_service_pb2.FailTaskRequest(**task_call(task), failure=common_pb2.Failure(message="boom"))
    response = await api.workers.FailTask(fail, timeout=10)
    assert (response.will_retry, response.run_status) == (False, common_pb2.RUN_STATUS_CANCELLED)


async def test_get_graph_and_list_graphs_show_what_is_registered(api: Api) -> None:
    graph_id = unique("g")
    for version in (1, 2):
        definition = two_nodes(graph_id, version)
        await api.workers.RegisterGraph(worker_service_pb2.RegisterGraphRequest(graph=definition), timeout=10)
    newest = await api.workers.GetGraph(worker_service_pb2.GetGraphRequest(graph_id=graph_id), timeout=10)
    assert (newest.graph.graph_id, newest.graph.version, newest.graph.entry_node) == (graph_id, 2, "a")
    # Defaults are filled in, so a worker sees exactly what the server applies.
    node = newest.graph.nodes[0]
    assert (node.node_id, node.task_queue, node.retry.max_attempts, node.retry.backoff) == ("a", "default", 3, 2.0)
    assert node.retry.initial_interval.ToTimedelta() == timedelta(seconds=1)
    assert [(e.from_node, e.key, e.to_node) for e in newest.graph.edges] == [("a", "next", "b")]
    first = await api.workers.GetGraph(worker_service_pb2.GetGraphRequest(graph_id=graph_id, version=1), timeout=10)
    assert first.graph.version == 1
    await rejected(
        api.workers.GetGraph(worker_service_pb2.GetGraphRequest(graph_id=graph_id, version=3), timeout=10),
        Code.NOT_FOUND,
    )
    nameless = worker_service_pb2.GetGraphRequest(graph_id="")
    await rejected(api.workers.GetGraph(nameless, timeout=10), Code.INVALID_ARGUMENT, "graph_id")

    page = await api.workers.ListGraphs(worker_service_pb2.ListGraphsRequest(graph_id=graph_id, page_size=1))
    assert [(g.graph_id, g.version) for g in page.graphs] == [(graph_id, 1)]
    rest = await api.workers.ListGraphs(
        worker_service_pb2.ListGraphsRequest(graph_id=graph_id, page_size=1, page_token=page.next_page_token)
    )
    assert [(g.graph_id, g.version) for g in rest.graphs] == [(graph_id, 2)]
    forged = worker_service_pb2.ListGraphsRequest(page_token="nope")
    await rejected(api.workers.ListGraphs(forged, timeout=10), Code.INVALID_ARGUMENT, "page_token")


async def test_a_conflicting_registration_names_the_field_that_differs(api: Api, graph: common_pb2.GraphDef) -> None:
    changed = common_pb2.GraphDef()
    changed.CopyFrom(graph)
    changed.nodes[1].task_queue = "elsewhere"
    details = await rejected(
        api.workers.RegisterGraph(worker_service_pb2.RegisterGraphRequest(graph=changed), timeout=10),
        Code.ALREADY_EXISTS,
    )
    assert "graph.nodes['b'].task_queue is 'default' in the registered version, 'elsewhere' in this one" in details
