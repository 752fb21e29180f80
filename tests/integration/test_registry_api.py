"""RegistryService over gRPC, on both backends: the calls, their refusals, namespaces, and watching."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest

import cmo
import cmo.registry
from cmo.api.v1 import registry_service_pb2 as pb
from cmo.api.v1 import registry_service_pb2_grpc as registry_grpc
from cmo.errors import RpcError
from cmo.registry import AgentEvent, AgentPresence, AgentStatus, TopicRole
from cmo_server.app import CmoServer
from tests.support.waiting import assert_eventually

HEALTHY, DEGRADED, UNAVAILABLE = AgentStatus.HEALTHY, AgentStatus.DEGRADED, AgentStatus.UNAVAILABLE


async def test_an_agent_registers_beats_is_found_and_leaves(client: cmo.Client) -> None:
    registry = client.registry
    registered = await registry.register(
        "healer-1",
        kind="specialist",
        name="healer",
        version="1.4.2",
        capabilities=["healing.selector", "healing.verifier"],
        topics=[("qa.default.default.specialists.healer-1.invoke", TopicRole.SUBSCRIBE)],
        metadata={"zone": "a"},
        lease=timedelta(seconds=30),
    )
    agent = registered.agent
    assert agent.status is AgentStatus.STARTING
    assert agent.subscribes_to() == ["qa.default.default.specialists.healer-1.invoke"]
    assert agent.lease == timedelta(seconds=30)
    assert registered.lease_id
    assert await registry.discover("healing.selector") == []  # STARTING is not discovered by default

    expires, status = await registry.heartbeat("healer-1", registered.lease_id, status=HEALTHY, load=0.2)
    assert status is HEALTHY
    assert expires > datetime.now(UTC) + timedelta(seconds=25)
    found = await registry.discover("healing.selector", version=">=1.4,<2")
    assert [a.agent_id for a in found] == ["healer-1"]
    assert found[0].load == 0.2
    assert await registry.discover("healing.selector", version=">=2") == []
    assert [a.agent_id async for a in registry.list(kind="specialist")] == ["healer-1"]

    left = await registry.deregister("healer-1", lease_id=registered.lease_id, reason="rolling restart")
    assert (left.status, left.status_reason) == (UNAVAILABLE, "rolling restart")
    assert (await registry.get("healer-1")).status is UNAVAILABLE
    with pytest.raises(RpcError) as refused:
        await registry.heartbeat("healer-1", registered.lease_id)
    assert refused.value.code == "FAILED_PRECONDITION"
    assert "register again" in refused.value.message


async def test_a_refused_move_and_a_stale_lease_are_failed_preconditions(client: cmo.Client) -> None:
    registry = client.registry
    first = await registry.register("a1", kind="worker", status=HEALTHY)
    with pytest.raises(RpcError) as refused:
        await registry.heartbeat("a1", first.lease_id, status=AgentStatus.STARTING)
    assert refused.value.code == "FAILED_PRECONDITION"
    assert refused.value.message == "agent 'a1' is HEALTHY: it cannot become STARTING"
    await registry.register("a1", kind="worker")
    with pytest.raises(RpcError) as refused:
        await registry.heartbeat("a1", first.lease_id)
    assert refused.value.code == "FAILED_PRECONDITION"
    assert "registered again" in refused.value.message
    with pytest.raises(RpcError) as refused:
        await registry.get("nobody")
    assert (refused.value.code, refused.value.message) == ("NOT_FOUND", "agent 'nobody' not found")


BAD_REGISTRATIONS = [
    (pb.RegisterAgentRequest(agent_id=""), "agent_id"),
    (pb.RegisterAgentRequest(agent_id="-starts-with-dash"), "agent_id"),
    (pb.RegisterAgentRequest(agent_id="has space"), "agent_id"),
    (pb.RegisterAgentRequest(agent_id="a" * 129), "agent_id"),
    (pb.RegisterAgentRequest(agent_id="a", kind="Worker"), "kind"),
    (pb.RegisterAgentRequest(agent_id="a", version="1 2"), "version"),
    (pb.RegisterAgentRequest(agent_id="a", capabilities=[""]), "capabilities[0]"),
    (pb.RegisterAgentRequest(agent_id="a", capabilities=["c"] * 65), "capabilities"),
    (pb.RegisterAgentRequest(agent_id="a", topics=[pb.AgentTopic(topic="t")]), "topics[0].role"),
    (
        pb.RegisterAgentRequest(agent_id="a", topics=[pb.AgentTopic(topic="", role=pb.TOPIC_ROLE_PUBLISH)]),
        "topics[0].topic",
    ),
    (pb.RegisterAgentRequest(agent_id="a", metadata={str(i): "v" for i in range(33)}), "metadata"),
    (pb.RegisterAgentRequest(agent_id="a", metadata={"k": "v" * 1025}), "metadata[k]"),
    (pb.RegisterAgentRequest(agent_id="a", status=pb.AGENT_STATUS_UNAVAILABLE), "status"),
    (pb.RegisterAgentRequest(agent_id="a", status=9), "status"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("request_", "field"), BAD_REGISTRATIONS)
async def test_a_bad_registration_names_its_field_and_writes_nothing(
    server: CmoServer, request_: pb.RegisterAgentRequest, field: str
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = registry_grpc.RegistryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.RegisterAgent(request_)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert (refused.value.details() or "").startswith(f"{field}: ")
        listed = await stub.ListAgents(pb.ListAgentsRequest())
        assert list(listed.agents) == []


@pytest.mark.parametrize(
    ("seconds", "message"), [(0.5, "lease: must be at least 1s"), (3601, "lease: must be at most 3600s")]
)
async def test_a_lease_is_between_a_second_and_an_hour(client: cmo.Client, seconds: float, message: str) -> None:
    with pytest.raises(RpcError) as refused:
        await client.registry.register("a", kind="worker", lease=timedelta(seconds=seconds))
    assert (refused.value.code, f"{refused.value.message}") == ("INVALID_ARGUMENT", message)


async def test_bad_reads_and_beats_name_their_field(server: CmoServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = registry_grpc.RegistryServiceStub(channel)
        bad: list[tuple[object, object, str]] = [
            (stub.Heartbeat, pb.HeartbeatRequest(agent_id="a", lease_id="x", load=1.5), "load"),
            (stub.Heartbeat, pb.HeartbeatRequest(agent_id="a", lease_id="x", load=float("nan")), "load"),
            (stub.Heartbeat, pb.HeartbeatRequest(agent_id="a"), "lease_id"),
            (stub.Discover, pb.DiscoverRequest(), "capability"),
            (stub.Discover, pb.DiscoverRequest(capability="c", version="~~1"), "version"),
            (stub.Discover, pb.DiscoverRequest(capability="c", limit=101), "limit"),
            (stub.ListAgents, pb.ListAgentsRequest(statuses=[7]), "statuses[0]"),  # type: ignore[list-item]
            (stub.ListAgents, pb.ListAgentsRequest(page_token="forged"), "page_token"),
            (stub.ListAgents, pb.ListAgentsRequest(page_size=1001), "page_size"),
            (stub.Deregister, pb.DeregisterRequest(agent_id="a", reason="r" * 1025), "reason"),
        ]
        for method, request, field in bad:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await method(request)  # type: ignore[operator]
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, field
            assert (refused.value.details() or "").startswith(f"{field}: ")


async def test_an_agent_of_another_namespace_does_not_exist(client: cmo.Client) -> None:
    mine = await client.registry.register("a1", kind="worker", capabilities=["c"], status=HEALTHY)
    theirs = client.in_namespace("acme", "web").registry
    with pytest.raises(RpcError) as refused:
        await theirs.get("a1")
    assert refused.value.code == "NOT_FOUND"
    with pytest.raises(RpcError) as refused:
        await theirs.heartbeat("a1", mine.lease_id)
    assert refused.value.code == "NOT_FOUND"
    with pytest.raises(RpcError) as refused:
        await theirs.deregister("a1")
    assert refused.value.code == "NOT_FOUND"
    assert await theirs.discover("c") == []
    assert [a async for a in theirs.list()] == []
    assert (await client.registry.get("a1")).status is HEALTHY


async def test_listing_pages_through_every_agent(client: cmo.Client) -> None:
    for i in range(25):
        await client.registry.register(f"w{i:02d}", kind="worker")
    listed = [a.agent_id async for a in client.registry.list(page_size=10)]
    assert listed == [f"w{i:02d}" for i in range(25)]


async def _next(events: AsyncIterator[AgentEvent], timeout: float = 10.0) -> AgentEvent:
    async with asyncio.timeout(timeout):
        return await anext(events)


async def test_a_watcher_sees_agents_come_change_and_lapse(client: cmo.Client) -> None:
    registry = client.registry
    await registry.register("old", kind="worker", status=HEALTHY)
    events = registry.watch()
    current = await _next(events)
    assert (current.kind, current.agent and current.agent.agent_id) == ("current", "old")
    assert (await _next(events)).kind == "synced"

    short = await registry.register("short", kind="specialist", lease=timedelta(seconds=1), status=HEALTHY)
    event = await _next(events)
    assert (event.kind, event.agent and event.agent.agent_id) == ("changed", "short")
    await registry.heartbeat("short", short.lease_id, status=DEGRADED)
    event = await _next(events)
    assert event.agent is not None
    assert event.agent.status is DEGRADED
    # Nobody beats now: the lease lapses, reads say so at once, and the sweep tells the watcher.
    event = await _next(events, timeout=5)
    assert event.agent is not None
    assert (event.agent.agent_id, event.agent.status, event.agent.status_reason) == (
        "short",
        UNAVAILABLE,
        "lease lapsed",
    )
    await events.aclose()  # type: ignore[attr-defined]


async def test_a_presence_beats_and_registers_again_after_its_lease_lapsed(client: cmo.Client) -> None:
    presence = AgentPresence(client.registry, "p1", kind="specialist", capabilities=["c"], lease=timedelta(seconds=3))
    await presence.start()
    try:
        await asyncio.sleep(0.3)
        assert presence.beats >= 1  # the first beat makes it HEALTHY at once
        assert [a.agent_id for a in await client.registry.discover("c")] == ["p1"]
        # An operator removes it: the next beat finds its lease gone and registers again.
        await client.registry.deregister("p1", reason="operator")
        await presence.beat()
        await presence.beat()
        assert (await client.registry.get("p1")).status is HEALTHY
    finally:
        await presence.aclose()
    agent = await client.registry.get("p1")
    assert (agent.status, agent.status_reason) == (UNAVAILABLE, "shut down")


async def test_a_worker_is_in_the_registry_while_it_runs_and_its_polls_end_when_it_leaves(
    client: cmo.Client, server: CmoServer
) -> None:
    graph: cmo.Graph[dict[str, int]] = cmo.Graph("registered-graph", version=3)

    @graph.node(entry=True, task_queue="q-registered")
    async def only(state: dict[str, int], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, int]]:
        return cmo.NodeResult(state)

    worker = cmo.Worker(client, [graph], concurrency=4, poll_wait=30, session=False)
    running = asyncio.create_task(worker.run())
    try:
        assert worker.presence is not None
        await asyncio.wait_for(worker.presence.registered.wait(), 10)

        async def listed() -> cmo.registry.AgentInfo:
            [agent] = [a async for a in client.registry.list(kind="worker")]
            assert agent.status is HEALTHY
            assert agent.last_poll_at is not None  # recorded by the server's sweep, once a second
            return agent

        agent = await assert_eventually(listed, timeout=10, what="the worker listed, with its last poll")
        assert agent.agent_id == worker.worker_id
        assert agent.capabilities == ("graph:registered-graph@3", "queue:q-registered")
        assert agent.metadata["worker_id"] == worker.worker_id
        assert agent.metadata["concurrency"] == "4"
        await assert_eventually(lambda: server.engine.parked_polls == 4, timeout=10, what="four polls parked")
    finally:
        worker.shutdown()
        await asyncio.wait_for(running, 20)
    # Its unary polls were ended by the server as it deregistered, not left parked for 30 s.
    assert server.engine.parked_polls == 0
    agent = await client.registry.get(worker.worker_id)
    assert (agent.status, agent.status_reason) == (UNAVAILABLE, "the worker stopped")


async def test_a_presence_with_a_transport_publishes_each_beat_as_a_signed_heartbeat_envelope(
    client: cmo.Client,
) -> None:
    from cmo.a2a import Envelope, HmacKeys
    from cmo.a2a.transports.memory import MemoryTransport

    transport = MemoryTransport()
    keys = HmacKeys({"k1": b"0123456789abcdef0123456789abcdef"}, current="k1")
    heard = await transport.subscribe(
        "qa.default.default.registry.agents.heartbeat", group="listener", consumer="c", max_deliveries=3, ack_wait=5
    )
    presence = AgentPresence(
        client.registry, "beater", kind="specialist", version="2.0", capabilities=["c"], load=lambda: 0.5,
        lease=timedelta(seconds=30), transport=transport, keys=keys,
    )  # fmt: skip
    await presence.start()
    try:
        async with asyncio.timeout(5):
            delivery = await anext(aiter(heard))
        envelope = Envelope.parse(delivery.data)
        keys.verify(envelope)
        assert envelope.meta.type == "Heartbeat"
        assert (envelope.meta.sender.type, envelope.meta.sender.id) == ("specialist", "beater")
        assert envelope.payload == {"status": "healthy", "load": 0.5, "capabilities": ["c"], "lease_seconds": 30}
        assert presence.interval == 10.0  # a third of the lease
    finally:
        await presence.aclose()
        await heard.close()


async def test_a_specialist_with_a_registry_is_registered_while_it_serves_and_leaves_when_it_stops(
    client: cmo.Client,
) -> None:
    from cmo.a2a import AgentId, Cost, Envelope, SpecialistInvocationRequest, SpecialistResult
    from cmo.a2a.agents import Specialist
    from cmo.a2a.transports.memory import MemoryTransport

    async def answer(request: SpecialistInvocationRequest, envelope: Envelope) -> SpecialistResult:
        return SpecialistResult("succeeded", 1.0, Cost(0))

    specialist = Specialist(
        AgentId("specialist", "healer", "3.1.0"), tenant="default", project="default", transport=MemoryTransport(),
        handler=answer, registry=client.registry, instance="healer-a", provides=["healing.selector"],
    )  # fmt: skip
    serving = asyncio.create_task(specialist.run())
    await asyncio.wait_for(specialist.ready.wait(), 10)
    agent = await client.registry.get("healer-a")
    assert (agent.kind, agent.name, agent.version) == ("specialist", "healer", "3.1.0")
    assert agent.capabilities == ("healing.selector",)
    assert sorted(agent.subscribes_to()) == [
        "qa.default.default.specialists.healer-a.invoke",
        "qa.default.default.specialists.healer.invoke",
    ]
    await assert_eventually(
        lambda: _status(client, "healer-a", HEALTHY), timeout=5, what="HEALTHY after its first beat"
    )
    specialist.stop()
    await asyncio.wait_for(serving, 10)
    left = await client.registry.get("healer-a")
    assert (left.status, left.status_reason) == (UNAVAILABLE, "the specialist stopped")


async def _status(client: cmo.Client, agent_id: str, status: AgentStatus) -> bool:
    return (await client.registry.get(agent_id)).status is status
