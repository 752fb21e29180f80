"""The server's standard surfaces: health checking, reflection, graceful shutdown; and its
background loops, which may not die silently."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from cmo_server.app import CmoServer
from cmo_server.config import ServerConfig, StoreConfig
from cmo_server.engine import Engine
from cmo_server.store import ReadyListener
from cmo_server.store.sqlite import SqliteStore


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


class BrokenPushStore(SqliteStore):
    """A store whose push listener fails at once, as one with a bug would."""

    async def watch(self, listener: ReadyListener) -> None:
        raise RuntimeError("the push listener broke")


def background_tasks() -> list[str]:
    return sorted(t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("cmo-") and not t.done())


def crash_logs(caplog: pytest.LogCaptureFixture, what: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.ERROR and r.getMessage().startswith(f"{what} crashed")]


async def test_a_crashed_engine_loop_is_logged_and_stops_the_others(tmp_path, caplog: pytest.LogCaptureFixture):
    async with BrokenPushStore.open(tmp_path / "cmo.db") as store:
        engine = Engine(store)
        await engine.start()
        with pytest.raises(ExceptionGroup) as caught:
            await engine.wait_background()
        assert caught.group_contains(RuntimeError, match="the push listener broke")
        [logged] = crash_logs(caplog, "the store's push listener")
        assert logged.exc_info is not None
        assert background_tasks() == []  # the task sweeps and the wait timers went down with it
        await engine.aclose()
        await engine.aclose()  # idempotent, and the crash (already reported) is not raised again
        await engine.wait_background()  # closed: returns at once


async def test_a_crashed_background_loop_stops_the_server_visibly(tmp_path, caplog: pytest.LogCaptureFixture):
    config = ServerConfig(listen="127.0.0.1:0", store=StoreConfig(sqlite_path=str(tmp_path / "cmo.db")))
    async with BrokenPushStore.open(tmp_path / "cmo.db") as store:
        with pytest.raises(ExceptionGroup) as caught:
            # The timeout only keeps a server that does not notice from hanging the suite.
            async with asyncio.timeout(30), CmoServer.running(config, store=store):
                await asyncio.Event().wait()  # until the crash cancels it
    assert caught.group_contains(RuntimeError, match="the push listener broke", depth=None)
    assert len(crash_logs(caplog, "the store's push listener")) == 1
    assert background_tasks() == []  # the health monitor too


async def test_the_callers_own_error_comes_out_of_a_running_server_as_it_is(tmp_path):
    config = ServerConfig(listen="127.0.0.1:0", store=StoreConfig(sqlite_path=str(tmp_path / "cmo.db")))

    async def fail_while_serving() -> None:
        async with CmoServer.running(config):
            raise LookupError(background_tasks())

    with pytest.raises(LookupError) as caught:  # not inside an ExceptionGroup
        await fail_while_serving()
    assert caught.value.args[0] == ["cmo-engine", "cmo-health", "cmo-sweeps", "cmo-task-sweeps", "cmo-wait-timers"]
    assert background_tasks() == []
