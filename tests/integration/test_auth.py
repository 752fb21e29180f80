"""Authentication on a real server, on both backends: no token, a forged one, a missing scope,
another namespace — each refused before anything is read or written; the right token runs a run
(a worker's session too) and registers an agent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import cmo
from cmo.api.v1 import common_pb2
from cmo.api.v1 import registry_service_pb2 as reg_pb
from cmo.api.v1 import registry_service_pb2_grpc as reg_grpc
from cmo.api.v1 import run_service_pb2 as run_pb
from cmo.api.v1 import run_service_pb2_grpc as run_grpc
from cmo.api.v1 import worker_service_pb2 as work_pb
from cmo.api.v1 import worker_service_pb2_grpc as work_grpc
from cmo_server.app import CmoServer
from cmo_server.config import AuthConfig, ServerConfig

SECRET = b"an-integration-test-secret-of-32-bytes-or-more"
ISSUER = "https://auth.test"
ALL = "runs:read runs:write runs:admin workers registry:read registry:write"


def token(scope: str = ALL, *, tenant: str = "acme", key: bytes = SECRET, **extra: Any) -> str:
    now = int(time.time())
    claims = {"sub": "tester", "iss": ISSUER, "aud": "cmo", "exp": now + 300, "scope": scope, "tenant": tenant}
    return jwt.encode({**claims, **extra}, key, algorithm="HS256", headers={"kid": "k1"})


@pytest.fixture
async def secured(server_config: ServerConfig, tmp_path: Path) -> AsyncIterator[CmoServer]:
    (tmp_path / "auth.key").write_bytes(SECRET)
    auth = AuthConfig(mode="jwt", keys_file=str(tmp_path / "auth.key"), key_id="k1", algorithm="HS256", issuer=ISSUER)
    async with CmoServer.running(replace(server_config, auth=auth)) as server:
        yield server


def _stubs(channel: grpc.aio.Channel) -> tuple[Any, Any, Any]:
    return run_grpc.RunServiceStub(channel), work_grpc.WorkerServiceStub(channel), reg_grpc.RegistryServiceStub(channel)


def _md(value: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {value}"),)


async def test_a_call_without_credentials_or_with_forged_ones_is_unauthenticated(secured: CmoServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secured.port}") as channel:
        runs, workers, registry = _stubs(channel)
        acme = common_pb2.Namespace(tenant="acme")
        calls: list[Callable[[Any], Awaitable[Any]]] = [
            lambda md: runs.ListRuns(run_pb.ListRunsRequest(namespace=acme), metadata=md),
            lambda md: runs.StartRun(run_pb.StartRunRequest(graph_id="g", namespace=acme), metadata=md),
            lambda md: workers.PollTask(work_pb.PollTaskRequest(worker_id="w", namespace=acme), metadata=md),
            lambda md: registry.RegisterAgent(reg_pb.RegisterAgentRequest(agent_id="a", namespace=acme), metadata=md),
        ]
        for metadata in ((), _md("not-a-token"), _md(token(key=b"another-secret-of-32-bytes-or-more!!")),
                         _md(token(exp=int(time.time()) - 60))):  # fmt: skip
            for make in calls:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await make(metadata)
                assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
                assert refused.value.details() == "missing or invalid credentials"
        watch = registry.WatchAgents(reg_pb.WatchAgentsRequest(namespace=acme))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await watch.read()
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        # Health checks answer anyone (load balancers carry no token).
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_missing_scope_is_permission_denied(secured: CmoServer) -> None:
    async with await cmo.Client.connect(
        f"127.0.0.1:{secured.port}", tenant="acme", project="web", token=token("runs:read")
    ) as reader:
        assert [r async for r in reader.list_runs()] == []
        with pytest.raises(cmo.errors.RpcError) as refused:
            await reader.start("some-graph", {})
        assert refused.value.code == "PERMISSION_DENIED"
        with pytest.raises(cmo.errors.RpcError) as refused:
            await reader.registry.register("a1", kind="worker")
        assert refused.value.code == "PERMISSION_DENIED"


async def test_the_right_token_runs_a_run_on_a_worker_session_and_registers_agents(secured: CmoServer) -> None:
    graph: cmo.Graph[dict[str, int]] = cmo.Graph("secured-graph")

    @graph.node(entry=True)
    async def double(state: dict[str, int], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, int]]:
        return cmo.NodeResult({"n": state["n"] * 2}, next=cmo.END)

    async with await cmo.Client.connect(
        f"127.0.0.1:{secured.port}", tenant="acme", project="web", token=token()
    ) as client:
        worker = cmo.Worker(client, [graph], concurrency=2)
        running = asyncio.create_task(worker.run())
        try:
            handle = await client.start(graph, {"n": 21})
            assert await handle.result(timeout=20) == {"n": 42}
            assert worker.presence is not None
            await asyncio.wait_for(worker.presence.registered.wait(), 10)
            assert [a.agent_id async for a in client.registry.list(kind="worker")] == [worker.worker_id]
        finally:
            worker.shutdown()
            await asyncio.wait_for(running, 20)


async def test_another_namespace_is_not_found_for_every_call_and_nothing_is_written(secured: CmoServer) -> None:
    other = common_pb2.Namespace(tenant="other", project="x")
    md = _md(token(tenant="acme"))
    graph = common_pb2.GraphDef(
        graph_id="g", version=1, entry_node="a", nodes=[common_pb2.NodeDef(node_id="a", task_queue="q")]
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secured.port}") as channel:
        runs, workers, registry = _stubs(channel)
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "StartRun": lambda: runs.StartRun(run_pb.StartRunRequest(graph_id="g", namespace=other), metadata=md),
            "GetRun": lambda: runs.GetRun(run_pb.GetRunRequest(run_id="r", namespace=other), metadata=md),
            "ListRuns": lambda: runs.ListRuns(run_pb.ListRunsRequest(namespace=other), metadata=md),
            "WaitRun": lambda: runs.WaitRun(run_pb.WaitRunRequest(run_id="r", namespace=other), metadata=md),
            "GetHistory": lambda: runs.GetHistory(run_pb.GetHistoryRequest(run_id="r", namespace=other), metadata=md),
            "ForkRun": lambda: runs.ForkRun(run_pb.ForkRunRequest(run_id="r", namespace=other), metadata=md),
            "TerminateRun": lambda: runs.TerminateRun(
                run_pb.TerminateRunRequest(run_id="r", namespace=other), metadata=md
            ),
            "SignalRun": lambda: runs.SignalRun(
                run_pb.SignalRunRequest(run_id="r", name="s", namespace=other), metadata=md
            ),
            "CancelRun": lambda: runs.CancelRun(run_pb.CancelRunRequest(run_id="r", namespace=other), metadata=md),
            "RegisterGraph": lambda: workers.RegisterGraph(
                work_pb.RegisterGraphRequest(graph=graph, namespace=other), metadata=md
            ),
            "GetGraph": lambda: workers.GetGraph(
                work_pb.GetGraphRequest(graph_id="g", version=1, namespace=other), metadata=md
            ),
            "ListGraphs": lambda: workers.ListGraphs(work_pb.ListGraphsRequest(namespace=other), metadata=md),
            "PollTask": lambda: workers.PollTask(
                work_pb.PollTaskRequest(
                    worker_id="w",
                    task_queues=["q"],
                    graphs=[common_pb2.GraphRef(graph_id="g", version=1)],
                    namespace=other,
                ),
                metadata=md,
            ),
            "RegisterAgent": lambda: registry.RegisterAgent(
                reg_pb.RegisterAgentRequest(agent_id="a", namespace=other), metadata=md
            ),
            "Heartbeat": lambda: registry.Heartbeat(
                reg_pb.HeartbeatRequest(agent_id="a", lease_id="l", namespace=other), metadata=md
            ),
            "Deregister": lambda: registry.Deregister(
                reg_pb.DeregisterRequest(agent_id="a", namespace=other), metadata=md
            ),
            "GetAgent": lambda: registry.GetAgent(reg_pb.GetAgentRequest(agent_id="a", namespace=other), metadata=md),
            "ListAgents": lambda: registry.ListAgents(reg_pb.ListAgentsRequest(namespace=other), metadata=md),
            "Discover": lambda: registry.Discover(reg_pb.DiscoverRequest(capability="c", namespace=other), metadata=md),
        }
        for name, make in calls.items():
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await make()
            assert refused.value.code() is grpc.StatusCode.NOT_FOUND, name
            assert refused.value.details() == "namespace 'other/x' not found", name
        watch = registry.WatchAgents(reg_pb.WatchAgentsRequest(namespace=other), metadata=md)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await watch.read()
        assert refused.value.code() is grpc.StatusCode.NOT_FOUND

        # Nothing was written there: its owner sees no run, graph or agent.
        owner = _md(token(tenant="other"))
        assert list((await runs.ListRuns(run_pb.ListRunsRequest(namespace=other), metadata=owner)).runs) == []
        graphs = await workers.ListGraphs(work_pb.ListGraphsRequest(namespace=other), metadata=owner)
        assert list(graphs.graphs) == []
        agents = await registry.ListAgents(reg_pb.ListAgentsRequest(namespace=other), metadata=owner)
        assert list(agents.agents) == []


async def test_a_call_on_a_worker_session_is_held_to_the_callers_namespaces(secured: CmoServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secured.port}") as channel:
        session = work_grpc.WorkerServiceStub(channel).Session(metadata=_md(token(tenant="acme")))
        poll = work_pb.PollTaskRequest(
            worker_id="w", task_queues=["q"], graphs=[common_pb2.GraphRef(graph_id="g", version=1)],
            namespace=common_pb2.Namespace(tenant="other", project="x"),
        )  # fmt: skip
        await session.write(work_pb.SessionRequest(call_id=1, poll_task=poll))
        answer = await asyncio.wait_for(session.read(), 10)
        assert answer.call_id == 1
        assert answer.WhichOneof("result") == "error"
        assert (answer.error.code, answer.error.message) == (
            grpc.StatusCode.NOT_FOUND.value[0],
            "namespace 'other/x' not found",
        )
        await session.done_writing()


async def test_a_task_token_names_nothing_for_a_caller_of_another_namespace(secured: CmoServer) -> None:
    acme = common_pb2.Namespace(tenant="acme", project="web")
    mine, theirs = _md(token(tenant="acme")), _md(token(tenant="other"))
    graph = common_pb2.GraphDef(
        graph_id="tokens", version=1, entry_node="a", nodes=[common_pb2.NodeDef(node_id="a", task_queue="q")]
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secured.port}") as channel:
        runs, workers, _ = _stubs(channel)
        await workers.RegisterGraph(work_pb.RegisterGraphRequest(graph=graph, namespace=acme), metadata=mine)
        await runs.StartRun(run_pb.StartRunRequest(graph_id="tokens", namespace=acme), metadata=mine)
        polled = await workers.PollTask(
            work_pb.PollTaskRequest(
                worker_id="w1", task_queues=["q"], graphs=[common_pb2.GraphRef(graph_id="tokens", version=1)],
                namespace=acme,
            ),
            metadata=mine,
        )  # fmt: skip
        task_token = polled.task.task_token
        beat = work_pb.HeartbeatTaskRequest(task_token=task_token, worker_id="w1")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await workers.HeartbeatTask(beat, metadata=theirs)  # the server remembers the token: still checked
        assert refused.value.code() is grpc.StatusCode.NOT_FOUND
        await workers.HeartbeatTask(beat, metadata=mine)


async def test_a_task_lease_is_bound_to_the_principal_that_took_it(secured: CmoServer) -> None:
    acme = common_pb2.Namespace(tenant="acme", project="web")
    owner, intruder = _md(token(sub="team-a")), _md(token(sub="team-b"))  # the same namespace, both `workers`
    graph = common_pb2.GraphDef(
        graph_id="bound", version=1, entry_node="a", nodes=[common_pb2.NodeDef(node_id="a", task_queue="q")]
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secured.port}") as channel:
        runs, workers, _ = _stubs(channel)
        await workers.RegisterGraph(work_pb.RegisterGraphRequest(graph=graph, namespace=acme), metadata=owner)
        started = await runs.StartRun(run_pb.StartRunRequest(graph_id="bound", namespace=acme), metadata=owner)
        polled = await workers.PollTask(
            work_pb.PollTaskRequest(
                worker_id="w1", task_queues=["q"], graphs=[common_pb2.GraphRef(graph_id="bound", version=1)],
                namespace=acme,
            ),
            metadata=owner,
        )  # fmt: skip
        task_token = polled.task.task_token
        done = work_pb.CompleteTaskRequest(
            task_token=task_token, worker_id="w1", state=b'{"by": "b"}', next_key="__end__"
        )
        calls: dict[str, Callable[[Any], Awaitable[Any]]] = {
            "HeartbeatTask": lambda md: workers.HeartbeatTask(
                work_pb.HeartbeatTaskRequest(task_token=task_token, worker_id="w1"), metadata=md
            ),
            "CompleteTask": lambda md: workers.CompleteTask(done, metadata=md),
            "FailTask": lambda md: workers.FailTask(
                work_pb.FailTaskRequest(task_token=task_token, worker_id="w1", release=True), metadata=md
            ),
        }
        # Another principal with the worker's id and its task token holds nothing.
        for name, make in calls.items():
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await make(intruder)
            assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION, name
        run = await runs.GetRun(run_pb.GetRunRequest(run_id=started.run.run_id, namespace=acme), metadata=owner)
        assert run.run.status == common_pb2.RUN_STATUS_RUNNING
        await calls["HeartbeatTask"](owner)
        mine = work_pb.CompleteTaskRequest(
            task_token=task_token, worker_id="w1", state=b'{"by": "a"}', next_key="__end__"
        )
        await workers.CompleteTask(mine, metadata=owner)
        run = await runs.GetRun(run_pb.GetRunRequest(run_id=started.run.run_id, namespace=acme), metadata=owner)
        assert (run.run.status, run.run.result) == (common_pb2.RUN_STATUS_COMPLETED, b'{"by":"a"}')


async def test_write_calls_are_audited_with_who_what_where_and_the_outcome(
    secured: CmoServer, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    acme = common_pb2.Namespace(tenant="acme", project="web")
    with caplog.at_level(logging.INFO, logger="cmo.audit"):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{secured.port}") as channel:
            runs, _, registry = _stubs(channel)
            with pytest.raises(grpc.aio.AioRpcError):
                await runs.StartRun(run_pb.StartRunRequest(graph_id="nope", namespace=acme), metadata=_md(token()))
            with pytest.raises(grpc.aio.AioRpcError):
                await runs.TerminateRun(
                    run_pb.TerminateRunRequest(run_id="r", namespace=acme), metadata=_md(token("runs:read"))
                )
            with pytest.raises(grpc.aio.AioRpcError):
                await runs.CancelRun(run_pb.CancelRunRequest(run_id="r", namespace=acme))
            await registry.RegisterAgent(
                reg_pb.RegisterAgentRequest(agent_id="a1", namespace=acme), metadata=_md(token())
            )
            await runs.ListRuns(run_pb.ListRunsRequest(namespace=acme), metadata=_md(token()))  # a read: not audited
    records = [r.audit for r in caplog.records if r.name == "cmo.audit"]  # type: ignore[attr-defined]
    assert records == [
        {"who": "tester", "method": "StartRun", "namespace": "acme/web", "outcome": "NOT_FOUND"},
        {"who": "tester", "method": "TerminateRun", "namespace": "acme/web", "outcome": "PERMISSION_DENIED"},
        {"who": "", "method": "CancelRun", "namespace": "acme/web", "outcome": "UNAUTHENTICATED"},
        {"who": "tester", "method": "RegisterAgent", "namespace": "acme/web", "outcome": "OK"},
    ]


async def test_a_server_whose_key_file_is_missing_or_bad_does_not_start(tmp_path: Path) -> None:
    from cmo_server.app import CmoServer
    from cmo_server.config import AuthConfig, ConfigError, ServerConfig, StoreConfig

    for keys_file, said in ((tmp_path / "missing.key", "cannot be read"), (tmp_path / "short.key", "shorter than 32")):
        if keys_file.name == "short.key":
            keys_file.write_bytes(b"CHANGE_ME")
        config = ServerConfig(
            listen="127.0.0.1:0",
            store=StoreConfig(sqlite_path=str(tmp_path / "cmo.db")),
            auth=AuthConfig(mode="jwt", keys_file=str(keys_file), key_id="k", algorithm="HS256", issuer="i"),
        )
        with pytest.raises(ConfigError) as refused:
            async with CmoServer.running(config):
                pass
        assert refused.value.variable == "CMO_AUTH_KEYS_FILE"
        assert said in str(refused.value)


async def test_metrics_need_a_token_with_the_metrics_scope_and_the_probes_do_not(
    server_config: ServerConfig, tmp_path: Path
) -> None:
    from cmo_server.config import TelemetryConfig

    (tmp_path / "auth.key").write_bytes(SECRET)
    auth = AuthConfig(mode="jwt", keys_file=str(tmp_path / "auth.key"), key_id="k1", algorithm="HS256", issuer=ISSUER)
    config = replace(server_config, auth=auth, telemetry=TelemetryConfig(metrics_listen="127.0.0.1:0"))

    async def get(port: int, path: str, bearer: str = "") -> tuple[int, str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        extra = f"Authorization: Bearer {bearer}\r\n" if bearer else ""
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
        response = (await reader.read()).decode()
        writer.close()
        return int(response.split(" ")[1]), response.partition("\r\n\r\n")[2]

    async with CmoServer.running(config) as server:
        port = server.metrics_port
        assert (await get(port, "/metrics"))[0] == 401
        assert (await get(port, "/metrics", "forged"))[0] == 401
        assert (await get(port, "/metrics", token("runs:read")))[0] == 403
        status, body = await get(port, "/metrics", token("metrics"))
        assert status == 200
        assert "cmo_" in body
        assert (await get(port, "/healthz"))[0] == 200
        assert (await get(port, "/readyz"))[0] == 200
