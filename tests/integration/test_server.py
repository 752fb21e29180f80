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
    # The server's loops (the registry's own two start inside its loop, perhaps not yet).
    running = set(caught.value.args[0]) - {"cmo-agent-push", "cmo-agent-sweeps"}
    assert running == {"cmo-engine", "cmo-health", "cmo-registry", "cmo-sweeps", "cmo-task-sweeps", "cmo-wait-timers"}
    assert background_tasks() == []


GARBAGE = b"\x0a\x05ab"  # field 1 of 5 bytes, cut after 2: no request type parses it


async def send_raw(channel: grpc.aio.Channel, path: str, shape: str, body: bytes) -> None:
    """Send `body` as the request of `path`, as is, and read the reply."""
    identity = {"request_serializer": lambda b: b, "response_deserializer": lambda b: b}
    if shape == "unary_unary":
        await channel.unary_unary(path, **identity)(body, timeout=5)
    elif shape == "unary_stream":
        await channel.unary_stream(path, **identity)(body, timeout=5).read()
    else:
        await channel.stream_stream(path, **identity)(iter([body]), timeout=5).read()


@pytest.mark.parametrize(
    ("path", "shape", "request_type"),
    [
        ("/grpc.health.v1.Health/Check", "unary_unary", "grpc.health.v1.HealthCheckRequest"),
        ("/grpc.health.v1.Health/List", "unary_unary", "grpc.health.v1.HealthListRequest"),
        ("/grpc.health.v1.Health/Watch", "unary_stream", "grpc.health.v1.HealthCheckRequest"),
        (
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            "stream_stream",
            "grpc.reflection.v1alpha.ServerReflectionRequest",
        ),
    ],
)
async def test_health_and_reflection_refuse_garbage_plainly_and_log_no_traceback(
    tmp_path, caplog, path: str, shape: str, request_type: str
):
    config = ServerConfig(listen="127.0.0.1:0", store=StoreConfig(sqlite_path=str(tmp_path / "cmo.db")))
    with caplog.at_level(logging.DEBUG):
        async with (
            CmoServer.running(config) as server,
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
        ):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await send_raw(channel, path, shape, GARBAGE)
            # A well-formed call is answered as before.
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    assert raised.value.details() == f"the request body is not a valid {request_type}"
    leaks = [
        r.getMessage()
        for r in caplog.records
        if r.exc_info or "Traceback" in r.getMessage() or "<class" in r.getMessage()
    ]
    assert not leaks, leaks


async def test_health_list_answers_every_status(tmp_path, caplog):
    config = ServerConfig(listen="127.0.0.1:0", store=StoreConfig(sqlite_path=str(tmp_path / "cmo.db")))
    with caplog.at_level(logging.DEBUG):
        async with (
            CmoServer.running(config) as server,
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
        ):
            reply = await health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest(), timeout=5)
    assert {name: status.status for name, status in reply.statuses.items()} == {
        "": health_pb2.HealthCheckResponse.SERVING,
        "cmo.api.v1.RunService": health_pb2.HealthCheckResponse.SERVING,
        "cmo.api.v1.WorkerService": health_pb2.HealthCheckResponse.SERVING,
        "cmo.api.v1.RegistryService": health_pb2.HealthCheckResponse.SERVING,
    }
    assert not [r for r in caplog.records if r.exc_info], "the server logged a traceback"
