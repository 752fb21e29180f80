"""The gRPC health status and /readyz follow the database: NOT_SERVING while Postgres is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cmo_server.app import CmoServer
from cmo_server.config import BlobConfig, ServerConfig, StoreConfig, TelemetryConfig
from tests.support.postgres import Cluster, create_database, throwaway_cluster

pytestmark = pytest.mark.postgres


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with throwaway_cluster() as own:
        yield own


async def status(stub: health_pb2_grpc.HealthStub) -> int:
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    return int(reply.status)


async def eventually(stub: health_pb2_grpc.HealthStub, want: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while (got := await status(stub)) != want:
        assert time.monotonic() < deadline, f"health is {got}, never became {want}"
        await asyncio.sleep(0.1)


async def test_health_and_readyz_follow_postgres_going_away_and_coming_back(cluster: Cluster, tmp_path: Path):
    config = ServerConfig(
        listen="127.0.0.1:0",
        health_check_interval=timedelta(milliseconds=200),
        store=StoreConfig(database_url=create_database(cluster.url), pool_size=2),
        blob=BlobConfig(dir=str(tmp_path / "blobs")),
        telemetry=TelemetryConfig(metrics_listen="127.0.0.1:0"),
    )
    async with (
        CmoServer.running(config) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.metrics_port}") as http,
    ):
        stub = health_pb2_grpc.HealthStub(channel)
        assert await status(stub) == health_pb2.HealthCheckResponse.SERVING
        assert (await http.get("/readyz")).status_code == 200

        await asyncio.to_thread(cluster.stop)
        await eventually(stub, health_pb2.HealthCheckResponse.NOT_SERVING)
        assert (await http.get("/readyz")).status_code == 503
        assert (await http.get("/healthz")).status_code == 200  # alive, just not ready

        await asyncio.to_thread(cluster.start)
        await eventually(stub, health_pb2.HealthCheckResponse.SERVING)
        assert (await http.get("/readyz")).status_code == 200
