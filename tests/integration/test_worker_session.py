"""The worker session on the wire: framing, refusals, cancels, closing, and pushed cancels.

What a call on a session answers is the unary call's answer (test_api_validation and
test_hostile_input run through both); these tests are about what only a session has.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf.duration_pb2 import Duration

import cmo
from cmo.api.v1 import common_pb2, run_service_pb2, run_service_pb2_grpc, worker_service_pb2_grpc
from cmo.api.v1 import worker_service_pb2 as pb
from cmo.errors import RunFailedError
from cmo_server.app import CmoServer
from cmo_server.config import EngineLimits, ServerConfig, StoreConfig
from tests.integration.test_api_validation import two_nodes
from tests.integration.test_runs import serving

Code = grpc.StatusCode
INVALID = Code.INVALID_ARGUMENT.value[0]


class Session:
    """A raw Session stream: send SessionRequests, read SessionResponses."""

    def __init__(self, stub: worker_service_pb2_grpc.WorkerServiceStub) -> None:
        self.call = stub.Session()

    async def send(self, call_id: int, **call: Any) -> None:
        await self.call.write(pb.SessionRequest(call_id=call_id, **call))

    async def answer(self, timeout: float = 10) -> pb.SessionResponse:
        response = await asyncio.wait_for(self.call.read(), timeout)
        assert isinstance(response, pb.SessionResponse), f"the stream ended: {response!r}"
        return response


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[CmoServer]:
    # A long lease: a heartbeat is due only every 20 s, so what arrives sooner was pushed.
    config = ServerConfig(
        listen="127.0.0.1:0",
        store=StoreConfig(sqlite_path=str(tmp_path / "cmo.db")),
        limits=EngineLimits(task_lease=timedelta(seconds=60), sweep_interval=timedelta(milliseconds=100)),
    )
    async with CmoServer.running(config) as running:
        yield running


@pytest_asyncio.fixture
async def channel(server: CmoServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> worker_service_pb2_grpc.WorkerServiceStub:
    return worker_service_pb2_grpc.WorkerServiceStub(channel)


@pytest.fixture
def runs(channel: grpc.aio.Channel) -> run_service_pb2_grpc.RunServiceStub:
    return run_service_pb2_grpc.RunServiceStub(channel)


async def registered(stub: worker_service_pb2_grpc.WorkerServiceStub) -> common_pb2.GraphDef:
    graph = two_nodes(f"g-{uuid.uuid4().hex[:8]}")
    await stub.RegisterGraph(pb.RegisterGraphRequest(graph=graph), timeout=10)
    return graph


def poll(graph: common_pb2.GraphDef, *, worker_id: str = "w1", wait: float = 5.0) -> pb.PollTaskRequest:
    return pb.PollTaskRequest(
        worker_id=worker_id,
        task_queues=["default"],
        graphs=[common_pb2.GraphRef(graph_id=graph.graph_id, version=graph.version)],
        wait=Duration(seconds=int(wait), nanos=int((wait % 1) * 1e9)),
    )


async def start(runs: run_service_pb2_grpc.RunServiceStub, graph: common_pb2.GraphDef) -> str:
    run_id = uuid.uuid4().hex
    await runs.StartRun(run_service_pb2.StartRunRequest(run_id=run_id, graph_id=graph.graph_id), timeout=10)
    return run_id


async def test_calls_are_answered_as_they_finish_not_in_order(stub, runs):
    graph = await registered(stub)
    session = Session(stub)
    await session.send(1, poll_task=poll(graph, wait=5))
    await session.send(2, heartbeat_task=pb.HeartbeatTaskRequest(worker_id="w1", task_token="garbage"))
    answer = await session.answer()
    assert answer.call_id == 2, "the heartbeat waited for the poll before it"
    assert answer.error.code == INVALID
    assert answer.error.message.startswith("task_token:")
    run_id = await start(runs, graph)
    answer = await session.answer()
    assert answer.call_id == 1
    assert answer.poll_task.task.run_id == run_id
    # The task it carries is the poll's to use, exactly as a unary poll's.
    done = pb.CompleteTaskRequest(
        worker_id="w1", task_token=answer.poll_task.task.task_token, state=b"{}", next_key="next"
    )
    await session.send(3, complete_task=done)
    answer = await session.answer()
    assert answer.call_id == 3
    assert answer.complete_task.run_status == common_pb2.RUN_STATUS_RUNNING
    session.call.cancel()


@pytest.mark.parametrize(
    ("call_id", "call", "field"),
    [
        (0, {"heartbeat_task": pb.HeartbeatTaskRequest(worker_id="w1", task_token="t")}, "call_id"),
        (5, {}, "call"),
        (6, {"poll_task": pb.PollTaskRequest(worker_id="w\x001")}, "worker_id"),
        (7, {"poll_task": pb.PollTaskRequest(worker_id="w1")}, "task_queues"),
    ],
    ids=["call-id-zero", "no-call", "nul-in-a-field", "invalid-poll"],
)
async def test_a_refused_call_is_answered_alone_and_the_session_goes_on(stub, call_id, call, field):
    graph = await registered(stub)
    session = Session(stub)
    await session.send(call_id, **call)
    answer = await session.answer()
    assert answer.call_id == call_id
    assert answer.error.code == INVALID, answer
    assert answer.error.message.startswith(f"{field}:"), answer.error.message
    await session.send(9, poll_task=poll(graph, wait=0))
    answer = await session.answer()
    assert answer.call_id == 9
    assert answer.HasField("poll_task")
    assert not answer.poll_task.HasField("task")
    session.call.cancel()


async def test_a_call_id_in_flight_is_refused(stub):
    graph = await registered(stub)
    session = Session(stub)
    await session.send(1, poll_task=poll(graph, wait=5))
    await session.send(1, poll_task=poll(graph, wait=5))
    answer = await session.answer()
    assert answer.call_id == 1
    assert answer.error.code == INVALID
    assert answer.error.message == "call_id: 1 is in flight already"
    session.call.cancel()


async def test_a_malformed_message_ends_the_stream_invalid_argument(channel):
    raw = channel.stream_stream(
        "/cmo.api.v1.WorkerService/Session", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    call = raw()
    await call.write(b"\xff\xff\xff\xff")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call.read()
    assert raised.value.code() == Code.INVALID_ARGUMENT
    assert "SessionRequest" in (raised.value.details() or "")


async def test_a_cancelled_poll_is_answered_cancelled_and_takes_no_task(stub, runs):
    graph = await registered(stub)
    session = Session(stub)
    await session.send(1, poll_task=poll(graph, wait=30))
    await asyncio.sleep(0.2)  # parked on the server
    await session.send(1, cancel=pb.CancelCall())
    await session.send(99, cancel=pb.CancelCall())  # nothing in flight: ignored
    answer = await session.answer()
    assert answer.call_id == 1
    assert answer.error.code == Code.CANCELLED.value[0]
    run_id = await start(runs, graph)
    # The task goes to the next poll, at attempt 1: the cancelled poll did not lease it.
    got = await stub.PollTask(poll(graph, worker_id="w2"), timeout=10)
    assert (got.task.run_id, got.task.attempt) == (run_id, 1)
    session.call.cancel()


async def test_closing_a_session_ends_its_polls_and_the_task_goes_to_another_worker_at_once(stub, runs):
    graph = await registered(stub)
    session = Session(stub)
    for call_id in (1, 2, 3):
        await session.send(call_id, poll_task=poll(graph, wait=30))
    await asyncio.sleep(0.2)
    session.call.cancel()  # the worker is gone: its parked polls with it
    await asyncio.sleep(0.2)
    run_id = await start(runs, graph)
    got = await stub.PollTask(poll(graph, worker_id="w2", wait=5), timeout=10)
    assert (got.task.run_id, got.task.attempt) == (run_id, 1)


async def test_a_half_closed_session_still_answers_its_calls(stub, runs):
    graph = await registered(stub)
    session = Session(stub)
    await session.send(1, poll_task=poll(graph, wait=5))
    await session.call.done_writing()
    run_id = await start(runs, graph)
    answer = await session.answer()
    assert answer.poll_task.task.run_id == run_id
    assert await session.call.read() is grpc.aio.EOF
    assert await session.call.code() == Code.OK


async def test_cancel_run_reaches_the_running_node_at_once_over_the_session(server):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(f"long-{uuid.uuid4().hex[:8]}")
    ticks = asyncio.Event()

    @cmo.activity
    async def tick(i: int) -> int:
        return i

    @graph.node(entry=True)
    async def long(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
        for i in range(600):  # a minute of work, checking in with ctx between pieces
            await ctx.activity(tick, i)
            ticks.set()
            await asyncio.sleep(0.1)
        return cmo.NodeResult(state)

    async with await cmo.Client.connect(f"127.0.0.1:{server.port}") as client, serving(client, [graph]):
        handle = await client.start(graph, {})
        await asyncio.wait_for(ticks.wait(), 10)
        asked = time.monotonic()
        await handle.cancel(reason="stop")
        with pytest.raises(RunFailedError, match="cancelled"):
            await handle.result(timeout=30)
        took = time.monotonic() - asked
        assert (await handle.describe()).status is cmo.RunStatus.CANCELLED
    # Heartbeats come every 20 s with this lease: the node stopped because the cancel was pushed.
    assert took < 5, f"the node stopped {took:.1f}s after CancelRun"
