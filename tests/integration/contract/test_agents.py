"""The agent registry's store contract, on SQLite and Postgres: records, the status machine,
leases that lapse, discovery, paging, namespaces, and watching (through `Registry`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest

from cmo_server.domain import Namespace
from cmo_server.registry import (
    LAPSED,
    Agent,
    AgentStatus,
    AgentStore,
    AgentTopic,
    HeartbeatRefused,
    Registration,
    Registry,
    TopicRole,
    WatchEvent,
)
from cmo_server.store import Store
from tests.integration.contract.conftest import Database
from tests.integration.contract.helpers import NS, unique
from tests.support.postgres import create_database, drop_database

HEALTHY, DEGRADED, STARTING, UNAVAILABLE = (
    AgentStatus.HEALTHY,
    AgentStatus.DEGRADED,
    AgentStatus.STARTING,
    AgentStatus.UNAVAILABLE,
)
OTHER = Namespace("other-tenant", "p")


@pytest.fixture
def agents(store: Store) -> AgentStore:
    return cast(AgentStore, store)


def registration(
    agent_id: str,
    *,
    capabilities: tuple[str, ...] = ("healing.selector",),
    kind: str = "specialist",
    lease: timedelta = timedelta(seconds=60),
    status: AgentStatus = STARTING,
    namespace: Namespace = NS,
    version: str = "1.0.0",
    lease_id: str = "",
) -> Registration:
    return Registration(
        namespace=namespace,
        agent_id=agent_id,
        kind=kind,
        name="healer",
        version=version,
        capabilities=capabilities,
        topics=(
            AgentTopic(f"qa.default.default.specialists.{agent_id}.invoke", TopicRole.SUBSCRIBE),
            AgentTopic("qa.default.default.registry.agents.heartbeat", TopicRole.PUBLISH),
        ),
        metadata={"host": "h1"},
        lease=lease,
        status=status,
        lease_id=lease_id or f"lease-{agent_id}",
    )


async def test_a_registration_is_recorded_whole_and_replaced_by_the_next(agents: AgentStore) -> None:
    before = datetime.now(UTC)
    agent = await agents.register_agent(registration("a1"))
    assert (agent.agent_id, agent.kind, agent.name, agent.version) == ("a1", "specialist", "healer", "1.0.0")
    assert agent.status is STARTING
    assert agent.capabilities == ("healing.selector",)
    assert AgentTopic("qa.default.default.specialists.a1.invoke", TopicRole.SUBSCRIBE) in agent.topics
    assert agent.metadata == {"host": "h1"}
    assert agent.lease == timedelta(seconds=60)
    assert before + timedelta(seconds=59) < agent.lease_expires_at < before + timedelta(seconds=62)
    assert agent.last_poll_at is None
    assert await agents.get_agent(NS, "a1") == agent

    again = await agents.register_agent(
        registration("a1", capabilities=("healing.verifier",), status=HEALTHY, lease_id="second", version="1.1")
    )
    assert again.capabilities == ("healing.verifier",)
    assert again.status is HEALTHY
    assert again.version == "1.1"
    assert again.revision > agent.revision
    assert again.lease_id == "second"
    found = await agents.discover_agents(NS, capability="healing.selector", statuses=[HEALTHY], kind="", limit=10)
    assert found == []


async def test_the_status_machine_allows_only_its_moves(agents: AgentStore) -> None:
    agent = await agents.register_agent(registration("a1"))
    lease = agent.lease_id
    beat = await agents.heartbeat_agent(NS, "a1", lease, status=HEALTHY, load=0.25)
    assert (beat.status, beat.changed) == (HEALTHY, True)
    kept = await agents.heartbeat_agent(NS, "a1", lease, status=None, load=None)
    assert (kept.status, kept.changed) == (HEALTHY, False)
    assert kept.lease_expires_at >= beat.lease_expires_at
    assert (await agents.heartbeat_agent(NS, "a1", lease, status=DEGRADED, load=None)).changed
    assert (await agents.heartbeat_agent(NS, "a1", lease, status=HEALTHY, load=None)).changed
    with pytest.raises(HeartbeatRefused) as refused:
        await agents.heartbeat_agent(NS, "a1", lease, status=STARTING, load=None)
    assert (refused.value.reason, refused.value.status) == (HeartbeatRefused.MOVE, HEALTHY)
    stored = await agents.get_agent(NS, "a1")
    assert stored is not None
    assert (stored.status, stored.load) == (HEALTHY, 0.25)  # the refused beat changed nothing

    gone = await agents.heartbeat_agent(NS, "a1", lease, status=UNAVAILABLE, load=None)
    assert gone.status is UNAVAILABLE
    with pytest.raises(HeartbeatRefused) as refused:
        await agents.heartbeat_agent(NS, "a1", lease, status=HEALTHY, load=None)
    assert refused.value.reason == HeartbeatRefused.LAPSED
    back = await agents.register_agent(registration("a1", status=HEALTHY, lease_id="again"))
    assert back.status is HEALTHY


async def test_heartbeats_are_fenced_by_the_registration(agents: AgentStore) -> None:
    await agents.register_agent(registration("a1", lease_id="old"))
    await agents.register_agent(registration("a1", lease_id="new"))
    with pytest.raises(HeartbeatRefused) as refused:
        await agents.heartbeat_agent(NS, "a1", "old", status=HEALTHY, load=None)
    assert refused.value.reason == HeartbeatRefused.STALE
    with pytest.raises(HeartbeatRefused) as refused:
        await agents.heartbeat_agent(NS, "nobody", "old", status=None, load=None)
    assert refused.value.reason == HeartbeatRefused.NOT_FOUND
    with pytest.raises(HeartbeatRefused) as refused:
        await agents.deregister_agent(NS, "a1", "old", reason="bye")
    assert refused.value.reason == HeartbeatRefused.STALE


async def test_a_lapsed_lease_reads_unavailable_at_once_and_is_recorded_once(agents: AgentStore) -> None:
    short = await agents.register_agent(registration("short", lease=timedelta(milliseconds=300), status=HEALTHY))
    await agents.register_agent(registration("long", status=HEALTHY))
    await asyncio.sleep(0.5)
    seen = await agents.get_agent(NS, "short")
    assert seen is not None
    assert (seen.status, seen.status_reason) == (UNAVAILABLE, LAPSED)  # before any sweep
    assert seen.revision == short.revision  # ... which has not recorded it yet
    found = await agents.discover_agents(NS, capability="healing.selector", statuses=[HEALTHY], kind="", limit=10)
    assert [a.agent_id for a in found] == ["long"]
    with pytest.raises(HeartbeatRefused) as refused:
        await agents.heartbeat_agent(NS, "short", short.lease_id, status=None, load=None)
    assert refused.value.reason == HeartbeatRefused.LAPSED

    lapsed = await agents.lapse_agents(limit=100)
    assert [(a.agent_id, a.status, a.status_reason) for a in lapsed] == [("short", UNAVAILABLE, LAPSED)]
    assert lapsed[0].revision > short.revision
    assert await agents.lapse_agents(limit=100) == []
    back = await agents.register_agent(registration("short", status=HEALTHY, lease_id="back"))
    assert (back.status, back.status_reason) == (HEALTHY, "")


async def test_deregistering_makes_an_agent_unavailable_once(agents: AgentStore) -> None:
    agent = await agents.register_agent(registration("a1", status=HEALTHY))
    left, changed = await agents.deregister_agent(NS, "a1", agent.lease_id, reason="shutting down")
    assert changed
    assert (left.status, left.status_reason) == (UNAVAILABLE, "shutting down")
    again, changed = await agents.deregister_agent(NS, "a1", None, reason="operator")
    assert not changed
    assert again.revision == left.revision
    with pytest.raises(HeartbeatRefused) as refused:
        await agents.deregister_agent(NS, "nobody", None, reason="x")
    assert refused.value.reason == HeartbeatRefused.NOT_FOUND


async def test_discovery_filters_and_orders_by_health_then_load(agents: AgentStore) -> None:
    specs = [("busy", HEALTHY, 0.9), ("idle", HEALTHY, 0.1), ("sick", DEGRADED, 0.0), ("new", STARTING, 0.0)]
    for agent_id, status, load in specs:
        agent = await agents.register_agent(registration(agent_id))
        if status is not STARTING:
            await agents.heartbeat_agent(NS, agent_id, agent.lease_id, status=status, load=load)
    await agents.register_agent(registration("worker-1", kind="worker", status=HEALTHY))
    await agents.register_agent(registration("other-cap", capabilities=("search",), status=HEALTHY))

    async def ids(statuses: list[AgentStatus], kind: str = "", limit: int = 10) -> list[str]:
        found = await agents.discover_agents(
            NS, capability="healing.selector", statuses=statuses, kind=kind, limit=limit
        )
        return [a.agent_id for a in found]

    assert await ids([HEALTHY], kind="specialist") == ["idle", "busy"]
    assert await ids([HEALTHY, DEGRADED, STARTING], kind="specialist") == ["idle", "busy", "sick", "new"]
    assert await ids([DEGRADED]) == ["sick"]
    assert await ids([HEALTHY], kind="worker") == ["worker-1"]
    assert await ids([HEALTHY], limit=1) in (["idle"], ["worker-1"])  # both idle and healthy
    assert [a.agent_id for a in await agents.discover_agents(NS, capability="search", statuses=[HEALTHY],
                                                             kind="", limit=10)] == ["other-cap"]  # fmt: skip


async def test_equal_agents_are_discovered_in_random_order(agents: AgentStore) -> None:
    for i in range(3):
        await agents.register_agent(registration(f"twin-{i}", status=HEALTHY))
    firsts = set()
    for _ in range(40):
        found = await agents.discover_agents(NS, capability="healing.selector", statuses=[HEALTHY], kind="", limit=1)
        firsts.add(found[0].agent_id)
    assert len(firsts) > 1


async def test_listing_pages_by_agent_id_with_filters(agents: AgentStore) -> None:
    for i in range(7):
        await agents.register_agent(registration(f"s{i}", status=HEALTHY if i % 2 else STARTING))
    await agents.register_agent(registration("w1", kind="worker", capabilities=("queue:default",)))

    async def page(after: str, limit: int, **filters: object) -> list[str]:
        found = await agents.list_agents(
            NS,
            statuses=cast(list[AgentStatus], filters.get("statuses", [])),
            kind=str(filters.get("kind", "")),
            capability=str(filters.get("capability", "")),
            after=after,
            limit=limit,
        )
        return [a.agent_id for a in found]

    assert await page("", 3) == ["s0", "s1", "s2"]
    assert await page("s2", 3) == ["s3", "s4", "s5"]
    assert await page("s5", 3) == ["s6", "w1"]
    assert await page("", 10, kind="worker") == ["w1"]
    assert await page("", 10, capability="queue:default") == ["w1"]
    assert await page("", 10, statuses=[HEALTHY]) == ["s1", "s3", "s5"]
    assert await page("s1", 10, statuses=[STARTING], kind="specialist") == ["s2", "s4", "s6"]


async def test_an_agent_of_another_namespace_does_not_exist(agents: AgentStore) -> None:
    mine = await agents.register_agent(registration("a1", status=HEALTHY))
    assert await agents.get_agent(OTHER, "a1") is None
    assert await agents.list_agents(OTHER, statuses=[], kind="", capability="", after="", limit=10) == []
    found = await agents.discover_agents(OTHER, capability="healing.selector", statuses=[HEALTHY], kind="", limit=10)
    assert found == []
    with pytest.raises(HeartbeatRefused):
        await agents.heartbeat_agent(OTHER, "a1", mine.lease_id, status=None, load=None)
    with pytest.raises(HeartbeatRefused):
        await agents.deregister_agent(OTHER, "a1", None, reason="x")
    # The same agent id in another namespace is another agent.
    theirs = await agents.register_agent(registration("a1", namespace=OTHER, capabilities=("x",)))
    assert theirs.capabilities == ("x",)
    still = await agents.get_agent(NS, "a1")
    assert still is not None
    assert still.capabilities == ("healing.selector",)
    assert [a.agent_id for a in await agents.agents_since(OTHER, 0)] == ["a1"]


async def test_changes_are_read_back_by_revision(agents: AgentStore) -> None:
    a = await agents.register_agent(registration("a"))
    b = await agents.register_agent(registration("b"))
    assert [x.agent_id for x in await agents.agents_since(NS, 0)] == ["a", "b"]
    await agents.heartbeat_agent(NS, "a", a.lease_id, status=HEALTHY, load=None)
    assert [x.agent_id for x in await agents.agents_since(NS, b.revision)] == ["a"]
    await agents.heartbeat_agent(NS, "a", a.lease_id, status=None, load=0.5)  # no change of status
    assert [x.agent_id for x in await agents.agents_since(NS, b.revision)] == ["a"]


async def test_polls_and_purges(agents: AgentStore) -> None:
    await agents.register_agent(registration("w1", kind="worker"))
    gone = await agents.register_agent(registration("w2", kind="worker"))
    polled = datetime.now(UTC).replace(microsecond=0)
    await agents.note_polls({(NS, "w1"): polled, (NS, "ghost"): polled, (OTHER, "w2"): polled})
    w1, w2 = await agents.get_agent(NS, "w1"), await agents.get_agent(NS, "w2")
    assert w1 is not None
    assert w2 is not None
    assert w1.last_poll_at == polled
    assert w2.last_poll_at is None
    await agents.note_polls({(NS, "w1"): polled - timedelta(seconds=5)})  # never goes back
    w1 = await agents.get_agent(NS, "w1")
    assert w1 is not None
    assert w1.last_poll_at == polled

    await agents.deregister_agent(NS, "w2", gone.lease_id, reason="done")
    assert await agents.purge_agents(unavailable_for=timedelta(hours=1), limit=10) == 0
    await asyncio.sleep(0.01)
    assert await agents.purge_agents(unavailable_for=timedelta(0), limit=10) == 1
    assert await agents.get_agent(NS, "w2") is None
    assert await agents.get_agent(NS, "w1") is not None


# -- watching, through the registry ----------------------------------------------------------------


async def _next(events: AsyncIterator[WatchEvent], timeout: float = 5.0) -> WatchEvent:
    async with asyncio.timeout(timeout):
        return await anext(events)


async def test_a_watcher_gets_the_current_agents_then_each_change(agents: AgentStore) -> None:
    registry = Registry(agents)
    first = await registry.register(
        NS, "a1", kind="specialist", name="healer", version="1", capabilities=["c"], topics=[], metadata={},
        lease=timedelta(seconds=60), status=HEALTHY,
    )  # fmt: skip
    events = registry.watch(NS, skip_current=False)
    assert (await _next(events)).agent == first
    assert (await _next(events)).kind == "synced"

    short = await registry.register(
        NS, "a2", kind="specialist", name="healer", version="1", capabilities=["c"], topics=[], metadata={},
        lease=timedelta(milliseconds=300), status=HEALTHY,
    )  # fmt: skip
    event = await _next(events)
    assert (event.kind, event.agent) == ("changed", short)
    await registry.heartbeat(NS, "a1", first.lease_id, status=None, load=0.3)  # no change: nothing told
    await registry.heartbeat(NS, "a1", first.lease_id, status=DEGRADED, load=None)
    event = await _next(events)
    assert event.agent is not None
    assert (event.agent.agent_id, event.agent.status) == ("a1", DEGRADED)

    unavailable: list[Agent] = []
    registry.on_unavailable(unavailable.append)
    await asyncio.sleep(0.4)
    await registry.sweep()
    event = await _next(events)
    assert event.agent is not None
    assert (event.agent.agent_id, event.agent.status, event.agent.status_reason) == ("a2", UNAVAILABLE, LAPSED)
    assert [a.agent_id for a in unavailable] == ["a2"]
    await events.aclose()
    assert registry.watchers == 0


@pytest.mark.postgres
async def test_a_watcher_on_one_replica_hears_of_changes_made_on_another(
    postgres_server: str, postgres_template: str
) -> None:
    # Postgres only: SQLite serves one server per file.
    url = await asyncio.to_thread(create_database, postgres_server, template=postgres_template)
    database = Database("postgres", url)
    try:
        await _watch_across_replicas(database)
    finally:
        await asyncio.to_thread(drop_database, postgres_server, url)


async def _watch_across_replicas(database: Database) -> None:
    async with database.open() as store_a, database.open() as store_b:
        a, b = Registry(cast(AgentStore, store_a)), Registry(cast(AgentStore, store_b))
        hearing = asyncio.create_task(b.run())
        try:
            events = b.watch(NS, skip_current=True)
            assert (await _next(events)).kind == "synced"
            await asyncio.sleep(0.3)  # b listens
            made = await a.register(
                NS, unique("a"), kind="worker", name="", version="1", capabilities=[], topics=[], metadata={},
                lease=timedelta(seconds=60), status=HEALTHY,
            )  # fmt: skip
            event = await _next(events)
            assert event.agent is not None
            assert (event.agent.agent_id, event.agent.revision) == (made.agent_id, made.revision)
            left = await a.deregister(NS, made.agent_id, made.lease_id, reason="bye")
            event = await _next(events)
            assert event.agent is not None
            assert (event.agent.status, event.agent.revision) == (UNAVAILABLE, left.revision)
            await events.aclose()
        finally:
            hearing.cancel()
            await asyncio.gather(hearing, return_exceptions=True)


async def test_a_departure_recorded_by_a_replica_that_told_nobody_is_told_again_by_another(
    agents: AgentStore,
) -> None:
    # Replica A records the lapse and dies before its listeners run; replica B's recheck tells its own.
    a, b = Registry(agents), Registry(agents)
    await a.register(
        NS, "gone", kind="specialist", name="x", version="1", capabilities=["c"], topics=[], metadata={},
        lease=timedelta(milliseconds=200), status=HEALTHY,
    )  # fmt: skip
    await a.register(
        NS, "here", kind="specialist", name="x", version="1", capabilities=["c"], topics=[], metadata={},
        lease=timedelta(seconds=60), status=HEALTHY,
    )  # fmt: skip
    await asyncio.sleep(0.3)
    await a.sweep()
    told: list[str] = []
    b.on_unavailable(lambda agent: told.append(agent.agent_id))
    await b.recheck()
    assert told == ["gone"]
    recent = await agents.unavailable_since(within=timedelta(minutes=10), limit=10)
    assert [x.agent_id for x in recent] == ["gone"]
    assert await agents.unavailable_since(within=timedelta(0), limit=10) == []
