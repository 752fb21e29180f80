"""HealthMonitor: the health status follows the dependency checks."""

from __future__ import annotations

import asyncio
import logging

import pytest
from grpc_health.v1 import health, health_pb2

from cmo_server._health import HealthMonitor

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def status(servicer: health.aio.HealthServicer, service: str) -> int:
    reply = await servicer.Check(health_pb2.HealthCheckRequest(service=service), None)
    return int(reply.status)


class Flaky:
    def __init__(self) -> None:
        self.error: Exception | None = None
        self.hang = False

    async def __call__(self) -> None:
        if self.hang:
            await asyncio.sleep(10)
        if self.error is not None:
            raise self.error


async def test_status_follows_the_checks_for_every_service(caplog: pytest.LogCaptureFixture):
    servicer = health.aio.HealthServicer()
    database, blobs = Flaky(), Flaky()
    monitor = HealthMonitor(
        servicer, ["", "cmo.api.v1.RunService"], {"database": database, "blob store": blobs}, interval=1, timeout=0.1
    )
    assert await monitor.check_now()
    assert await status(servicer, "") == SERVING
    assert await status(servicer, "cmo.api.v1.RunService") == SERVING

    database.error = ConnectionError("connection refused")
    with caplog.at_level(logging.INFO, logger="cmo_server._health"):
        assert not await monitor.check_now()
    assert await status(servicer, "") == NOT_SERVING
    assert await status(servicer, "cmo.api.v1.RunService") == NOT_SERVING
    assert monitor.failing == {"database": "ConnectionError: connection refused"}
    assert "not serving: database: ConnectionError: connection refused" in caplog.text

    database.error = None
    blobs.hang = True
    assert not await monitor.check_now()
    assert monitor.failing == {"blob store": "no answer within 0.1s"}

    blobs.hang = False
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cmo_server._health"):
        assert await monitor.check_now()
    assert await status(servicer, "") == SERVING
    assert "serving again" in caplog.text
