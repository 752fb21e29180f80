"""Rate limits on a real server: a namespace past its rate is RESOURCE_EXHAUSTED with the delay to
retry after, others are not held back, the SDK waits and tries again, workers' task calls are not
counted; a connection past its stream limit waits for a stream to end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import grpc
import httpx
import pytest

import cmo
from cmo.api.v1 import common_pb2
from cmo.api.v1 import registry_service_pb2 as reg_pb
from cmo.api.v1 import registry_service_pb2_grpc as reg_grpc
from cmo.api.v1 import run_service_pb2 as run_pb
from cmo.api.v1 import run_service_pb2_grpc as run_grpc
from cmo_server.app import CmoServer
from cmo_server.config import RateLimitConfig, ServerConfig, UIConfig
from tests.integration.test_runs import counting_graph, serving, unique

ACME = common_pb2.Namespace(tenant="acme", project="web")
GLOBEX = common_pb2.Namespace(tenant="globex", project="web")


@pytest.fixture
async def limited(server_config: ServerConfig) -> AsyncIterator[CmoServer]:
    rates = RateLimitConfig(calls_per_second=4, burst=3, max_streams_per_connection=2)
    config = replace(server_config, rates=rates, ui=UIConfig(listen="127.0.0.1:0"))
    async with CmoServer.running(config) as server:
        yield server


async def test_a_namespace_past_its_rate_is_told_when_to_retry_and_others_are_not_held_back(limited: CmoServer):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{limited.port}") as channel:
        runs = run_grpc.RunServiceStub(channel)
        for _ in range(3):
            await runs.ListRuns(run_pb.ListRunsRequest(namespace=ACME))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await runs.ListRuns(run_pb.ListRunsRequest(namespace=ACME))
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        details = refused.value.details() or ""
        assert details.startswith("namespace 'acme/web' is over its rate limit of 4 calls per second: retry in 0.")
        retry_ms = dict(refused.value.trailing_metadata() or ())["retry-after-ms"]
        assert 200 <= int(retry_ms) <= 251
        # The registry counts against the same namespace; another namespace has its own budget.
        with pytest.raises(grpc.aio.AioRpcError) as also:
            await reg_grpc.RegistryServiceStub(channel).ListAgents(reg_pb.ListAgentsRequest(namespace=ACME))
        assert also.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        for _ in range(3):
            await runs.ListRuns(run_pb.ListRunsRequest(namespace=GLOBEX))
        await asyncio.sleep(int(retry_ms) / 1000 + 0.05)
        await runs.ListRuns(run_pb.ListRunsRequest(namespace=ACME))


async def test_the_web_ui_s_calls_count_against_the_same_namespace_as_grpc_calls(limited: CmoServer):
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{limited.port}") as channel,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{limited.ui_port}", timeout=10) as http,
    ):
        runs = run_grpc.RunServiceStub(channel)
        for _ in range(2):
            await runs.ListRuns(run_pb.ListRunsRequest(namespace=ACME))
        assert (await http.get("/api/v1/runs", params={"tenant": "acme", "project": "web"})).status_code == 200
        refused = await http.get("/api/v1/runs", params={"tenant": "acme", "project": "web"})
        assert refused.status_code == 429
        assert refused.json()["error"].startswith("namespace 'acme/web' is over its rate limit of 4 calls per second")
        assert refused.headers["retry-after"] == "1"
        with pytest.raises(grpc.aio.AioRpcError) as also:
            await runs.ListRuns(run_pb.ListRunsRequest(namespace=ACME))
        assert also.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        elsewhere = await http.get("/api/v1/runs", params={"tenant": "globex", "project": "web"})
        assert elsewhere.status_code == 200


async def test_the_sdk_waits_out_a_rate_limit_and_workers_task_calls_are_not_counted(limited: CmoServer):
    async with await cmo.Client.connect(f"127.0.0.1:{limited.port}") as client:
        graph = counting_graph(unique("paced"), steps=6)
        async with serving(client, [graph]):
            handle = await client.start(graph, None)
            # Six steps' polls, completions and heartbeats: far past 4/s, none of them refused.
            assert (await handle.result(timeout=20)).n == 6
        started = time.monotonic()
        for _ in range(8):  # 3 at once, then one every 250 ms
            await handle.describe()
        assert time.monotonic() - started >= 1.0


async def test_a_connection_past_its_stream_limit_waits_for_a_stream_to_end(limited: CmoServer):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{limited.port}") as channel:
        registry = reg_grpc.RegistryServiceStub(channel)
        watches = [registry.WatchAgents(reg_pb.WatchAgentsRequest(namespace=GLOBEX)) for _ in range(2)]
        for watch in watches:
            await watch.read()  # SYNCED: both streams are open
        third = asyncio.ensure_future(
            run_grpc.RunServiceStub(channel).ListRuns(run_pb.ListRunsRequest(namespace=GLOBEX))
        )
        await asyncio.sleep(0.5)
        assert not third.done(), "a third stream opened past the limit of 2"
        watches[0].cancel()
        await asyncio.wait_for(third, 5)
        # Another connection was never limited by this one's streams.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{limited.port}") as other:
            await run_grpc.RunServiceStub(other).ListRuns(run_pb.ListRunsRequest(namespace=ACME))
        watches[1].cancel()
