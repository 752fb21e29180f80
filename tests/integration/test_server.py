"""The server's standard surfaces: health checking, reflection, graceful shutdown."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from cmo_server.app import CmoServer
from cmo_server.config import ServerConfig, StoreConfig


async def test_health_reflection_and_not_serving_on_shutdown(tmp_path):
    config = ServerConfig(listen="127.0.0.1:0", store=StoreConfig(sqlite_path=str(tmp_path / "cmo.db")))
    async with (
        CmoServer.running(config) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "cmo.api.v1.RunService", "cmo.api.v1.WorkerService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = [r async for r in stub.ServerReflectionInfo(iter([request]))]
        names = {s.name for s in responses[0].list_services_response.service}
        assert {"cmo.api.v1.RunService", "cmo.api.v1.WorkerService", "grpc.health.v1.Health"} <= names

        watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        await server.stop(grace=1.0)
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
