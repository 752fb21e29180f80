"""Why an unfinished run is where it is, as GetRun and ListRuns say, each situation created for
real on both backends: no worker, a worker that took the step and went silent, a node being
retried, a wait for a signal and a timer, a cancel request."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

import cmo
from cmo.api.v1 import common_pb2
from cmo.api.v1 import worker_service_pb2 as work_pb
from cmo.api.v1 import worker_service_pb2_grpc as work_grpc
from cmo_server.app import CmoServer
from tests.integration.test_runs import serving, unique


def one_node(graph_id: str, queue: str = "default") -> cmo.Graph[dict[str, Any]]:
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(graph_id)

    @graph.node(entry=True, task_queue=queue)
    async def only(state: dict[str, Any], ctx: cmo.NodeContext) -> Any:
        return cmo.NodeResult(state, next=cmo.END)

    return graph


async def progress_of(client: cmo.Client, run_id: str) -> cmo.RunProgress:
    info = await client.get_run(run_id)
    assert info.progress is not None, info
    return info.progress


async def poll_and_go_silent(server: CmoServer, graph: cmo.Graph[Any], queue: str, worker_id: str) -> None:
    """Take the run's task as a worker would, then never report: what a killed worker leaves."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        polled = await work_grpc.WorkerServiceStub(channel).PollTask(
            work_pb.PollTaskRequest(
                worker_id=worker_id,
                task_queues=[queue],
                graphs=[common_pb2.GraphRef(graph_id=graph.graph_id, version=graph.version)],
            )
        )
    assert polled.HasField("task")


async def test_a_run_no_worker_polls_for_says_so_and_a_lapsed_lease_is_named(server: CmoServer, client: cmo.Client):
    graph = one_node(unique("lonely"), queue="gpu")
    await client.register_graph(graph)
    handle = await client.start(graph, {})
    progress = await progress_of(client, handle.run_id)
    assert progress.reason == "no_poller"
    assert progress.summary == (
        f"no worker polls queue 'gpu' for {graph.graph_id}@1: step 0 (only) is ready "
        "(none has polled it since this server started)"
    )
    assert (progress.task_queue, progress.step_index, progress.pollers) == ("gpu", 0, 0)
    # ListRuns says the same, for each run of the page.
    [listed] = [r async for r in client.list_runs(graph_id=graph.graph_id)]
    assert listed.progress == progress
    # A worker takes it and dies: leased until its lease ends (1 s here), then named as lapsed.
    await poll_and_go_silent(server, graph, "gpu", "w-dead")
    leased = await progress_of(client, handle.run_id)
    assert leased.reason == "leased"
    assert leased.worker_id == "w-dead"
    assert leased.attempt == 1
    assert leased.until is not None
    assert timedelta(0) < leased.until - datetime.now(UTC) <= timedelta(seconds=1.5)
    assert leased.summary.startswith("step 0 (only), attempt 1, is leased to worker w-dead until in ")
    await asyncio.sleep((leased.until - datetime.now(UTC)).total_seconds() + 0.2)
    lapsed = await progress_of(client, handle.run_id)
    assert lapsed.reason == "no_poller"
    assert "worker w-dead's lease lapsed" in lapsed.summary
    assert lapsed.last_poll is not None  # this server saw w-dead's poll
    assert "last poll" in lapsed.summary


async def test_a_node_being_retried_says_when_and_after_which_error(client: cmo.Client):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("flaky"))

    @graph.node(entry=True, retry=cmo.RetryPolicy(max_attempts=5, initial_interval=timedelta(seconds=30)))
    async def flaky(state: dict[str, Any], ctx: cmo.NodeContext) -> Any:
        raise ConnectionError("the shop's API answered 503")

    async with serving(client, [graph]):
        handle = await client.start(graph, {})

        async def retrying() -> cmo.RunProgress | None:
            info = await client.get_run(handle.run_id)
            return info.progress if info.progress is not None and info.progress.reason == "retry_at" else None

        progress = None
        for _ in range(100):
            if (progress := await retrying()) is not None:
                break
            await asyncio.sleep(0.05)
    assert progress is not None
    assert progress.last_failure is not None
    assert (progress.last_failure.type, progress.last_failure.message) == (
        "ConnectionError",
        "the shop's API answered 503",
    )
    assert progress.until is not None
    assert timedelta(seconds=20) < progress.until - datetime.now(UTC) <= timedelta(seconds=31)
    assert progress.summary.startswith(
        "step 0 (flaky) failed (attempt 1: ConnectionError: the shop's API answered 503); retried in "
    )


async def test_a_waiting_run_names_its_signal_or_its_timer(client: cmo.Client):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("patient"))

    @graph.node(entry=True, edges={"nap": "nap"})
    async def ask(state: dict[str, Any], ctx: cmo.NodeContext) -> Any:
        await ctx.wait_for_signal("approve", timeout=timedelta(hours=2))
        return cmo.NodeResult(state, next="nap")

    @graph.node
    async def nap(state: dict[str, Any], ctx: cmo.NodeContext) -> Any:
        await ctx.sleep(timedelta(minutes=10))
        return cmo.NodeResult(state, next=cmo.END)

    async with serving(client, [graph]):
        handle = await client.start(graph, {})

        async def reason_is(reason: str) -> cmo.RunProgress:
            for _ in range(200):
                info = await client.get_run(handle.run_id)
                if info.progress is not None and info.progress.reason == reason:
                    return info.progress
                await asyncio.sleep(0.05)
            raise AssertionError(f"never {reason}: {info.progress}")

        waiting = await reason_is("signal")
        assert waiting.signal_name == "approve"
        assert waiting.summary.startswith("step 0 (ask) waits for the signal 'approve', until in ")
        await handle.signal("approve", {"by": "ops"})
        sleeping = await reason_is("timer")
        assert sleeping.summary.startswith("step 1 (nap) waits for a timer that fires in ")
        assert sleeping.until is not None
        assert timedelta(minutes=9) < sleeping.until - datetime.now(UTC) <= timedelta(minutes=10)


async def test_a_cancel_request_is_said_above_anything_else(server: CmoServer, client: cmo.Client):
    graph = one_node(unique("stopping"))
    await client.register_graph(graph)
    handle = await client.start(graph, {})
    await poll_and_go_silent(server, graph, "default", "w-busy")
    await handle.cancel(reason="not needed")
    progress = await progress_of(client, handle.run_id)
    assert progress.reason == "cancel_requested"
    assert progress.summary == (
        "cancel requested: the run ends CANCELLED once step 0 (only) winds up "
        "(its worker w-busy is told at its next heartbeat)"
    )


async def test_an_ended_run_has_no_progress(client: cmo.Client):
    graph = one_node(unique("done"))
    async with serving(client, [graph]):
        handle = await client.start(graph, {"x": 1})
        await handle.result(timeout=20)
    assert (await handle.describe()).progress is None


@pytest.mark.parametrize("count", [3])
async def test_ready_with_pollers_is_told_from_this_servers_polls(server: CmoServer, client: cmo.Client, count: int):
    # Workers poll the queue for another version of the graph: the run's version has no poller.
    graph = one_node(unique("versioned"))
    await client.register_graph(graph)
    handle = await client.start(graph, {})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = work_grpc.WorkerServiceStub(channel)
        other = common_pb2.GraphRef(graph_id=graph.graph_id, version=2)
        for i in range(count):
            await stub.PollTask(
                work_pb.PollTaskRequest(worker_id=f"w{i}", task_queues=["default"], graphs=[other], wait=_ms(10))
            )
    progress = await progress_of(client, handle.run_id)
    assert progress.reason == "no_poller"
    assert f"for {graph.graph_id}@1" in progress.summary


def _ms(ms: int) -> Any:
    from google.protobuf.duration_pb2 import Duration

    return Duration(nanos=ms * 1_000_000)
