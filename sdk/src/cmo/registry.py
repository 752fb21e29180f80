"""The agent registry, from the SDK: `client.registry`, and `AgentPresence`, which keeps an agent registered.

registry = client.registry
presence = AgentPresence(registry, "healer-1", kind="specialist", capabilities=["healing.selector"])
await presence.start()          # registered, HEALTHY, beating every lease / 3
await registry.discover("healing.selector")
await presence.aclose()         # deregistered
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import enum
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

import grpc

from cmo._rpc import call, rpc_error
from cmo.api.v1 import common_pb2
from cmo.api.v1 import registry_service_pb2 as pb
from cmo.api.v1 import registry_service_pb2_grpc as registry_grpc
from cmo.errors import RpcError

if TYPE_CHECKING:
    from cmo.a2a._signing import HmacKeys
    from cmo.a2a.transports import Transport

__all__ = [
    "AgentEvent",
    "AgentInfo",
    "AgentPresence",
    "AgentStatus",
    "Registered",
    "RegistryClient",
    "TopicRole",
]

logger = logging.getLogger(__name__)

CALL_TIMEOUT = 10.0
DEFAULT_LEASE = timedelta(seconds=60)


class AgentStatus(enum.IntEnum):
    """An agent's status; the values are the wire's. STARTING -> HEALTHY <-> DEGRADED; any -> UNAVAILABLE."""

    STARTING = 1
    HEALTHY = 2
    DEGRADED = 3
    UNAVAILABLE = 4


class TopicRole(enum.IntEnum):
    """Whether an agent publishes on a topic or takes messages from it; the values are the wire's."""

    PUBLISH = 1
    SUBSCRIBE = 2


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """An agent as the registry describes it."""

    tenant: str
    project: str
    agent_id: str
    kind: str
    name: str
    version: str
    capabilities: tuple[str, ...]
    topics: tuple[tuple[str, TopicRole], ...]
    metadata: dict[str, str]
    status: AgentStatus
    status_reason: str
    load: float
    lease: timedelta
    lease_expires_at: datetime
    registered_at: datetime
    last_heartbeat_at: datetime
    last_poll_at: datetime | None
    revision: int

    def subscribes_to(self) -> list[str]:
        """The topics it takes messages on."""
        return [topic for topic, role in self.topics if role is TopicRole.SUBSCRIBE]


@dataclass(frozen=True, slots=True)
class Registered:
    """A registration: the agent as recorded, and the lease id its heartbeats carry."""

    agent: AgentInfo
    lease_id: str


@dataclass(frozen=True, slots=True)
class AgentEvent:
    """What a watch reports.

    An agent as it was when the watch began ("current"), the end of those ("synced", no agent), or
    a registration or change of status ("changed").
    """

    kind: Literal["current", "synced", "changed"]
    agent: AgentInfo | None


_EVENT_KINDS: dict[int, Literal["current", "synced", "changed"]] = {
    pb.WatchAgentsResponse.KIND_CURRENT: "current",
    pb.WatchAgentsResponse.KIND_SYNCED: "synced",
    pb.WatchAgentsResponse.KIND_CHANGED: "changed",
}


class RegistryClient:
    """The registry of one namespace (`client.registry`)."""

    def __init__(self, channel: grpc.aio.Channel, namespace: common_pb2.Namespace) -> None:
        self._stub = registry_grpc.RegistryServiceStub(channel)
        self._namespace = namespace

    async def register(
        self,
        agent_id: str,
        *,
        kind: str,
        name: str = "",
        version: str = "",
        capabilities: Sequence[str] = (),
        topics: Sequence[tuple[str, TopicRole]] = (),
        metadata: Mapping[str, str] | None = None,
        lease: timedelta = DEFAULT_LEASE,
        status: AgentStatus = AgentStatus.STARTING,
    ) -> Registered:
        """Register (or register again) an agent; keep it with `heartbeat` at least every lease."""
        request = pb.RegisterAgentRequest(
            namespace=self._namespace,
            agent_id=agent_id,
            kind=kind,
            name=name,
            version=version,
            capabilities=list(capabilities),
            topics=[pb.AgentTopic(topic=t, role=int(r)) for t, r in topics],  # type: ignore[arg-type]
            metadata=dict(metadata or {}),
            status=int(status),  # type: ignore[arg-type]
        )
        request.lease.FromTimedelta(lease)
        response = await call(self._stub.RegisterAgent, request, timeout=CALL_TIMEOUT)
        return Registered(agent_from_proto(response.agent), response.lease_id)

    async def heartbeat(
        self, agent_id: str, lease_id: str, *, status: AgentStatus | None = None, load: float | None = None
    ) -> tuple[datetime, AgentStatus]:
        """Renew the lease (setting status and load, if given); (its new expiry, the status).

        Raises RpcError FAILED_PRECONDITION when the lease lapsed or the move is refused: register again.
        """
        request = pb.HeartbeatRequest(
            namespace=self._namespace,
            agent_id=agent_id,
            lease_id=lease_id,
            status=int(status or 0),  # type: ignore[arg-type]
        )
        if load is not None:
            request.load = load
        response = await call(self._stub.Heartbeat, request, timeout=CALL_TIMEOUT, retry_for=0)
        return response.lease_expires_at.ToDatetime(tzinfo=UTC), AgentStatus(response.status)

    async def deregister(self, agent_id: str, *, lease_id: str = "", reason: str = "") -> AgentInfo:
        """The agent leaves (UNAVAILABLE now). Without `lease_id`: an operator's deregistration."""
        request = pb.DeregisterRequest(namespace=self._namespace, agent_id=agent_id, lease_id=lease_id, reason=reason)
        response = await call(self._stub.Deregister, request, timeout=CALL_TIMEOUT, retry_for=0)
        return agent_from_proto(response.agent)

    async def get(self, agent_id: str) -> AgentInfo:
        """One agent; RpcError NOT_FOUND if the namespace has none of that id."""
        request = pb.GetAgentRequest(namespace=self._namespace, agent_id=agent_id)
        response = await call(self._stub.GetAgent, request, timeout=CALL_TIMEOUT)
        return agent_from_proto(response.agent)

    async def list(
        self,
        *,
        statuses: Sequence[AgentStatus] = (),
        kind: str = "",
        capability: str = "",
        page_size: int = 100,
    ) -> AsyncIterator[AgentInfo]:
        """Every agent (filtered), by agent_id, page by page."""
        token = ""
        while True:
            request = pb.ListAgentsRequest(
                namespace=self._namespace,
                statuses=[int(s) for s in statuses],  # type: ignore[misc]
                kind=kind,
                capability=capability,
                page_size=page_size,
                page_token=token,
            )
            response = await call(self._stub.ListAgents, request, timeout=CALL_TIMEOUT)
            for agent in response.agents:
                yield agent_from_proto(agent)
            token = response.next_page_token
            if not token:
                return

    async def discover(
        self,
        capability: str,
        *,
        statuses: Sequence[AgentStatus] = (),
        version: str = "",
        kind: str = "",
        limit: int = 10,
    ) -> builtins.list[AgentInfo]:
        """Agents with the capability (HEALTHY unless `statuses`), healthiest and least loaded first."""
        request = pb.DiscoverRequest(
            namespace=self._namespace,
            capability=capability,
            statuses=[int(s) for s in statuses],  # type: ignore[misc]
            version=version,
            kind=kind,
            limit=limit,
        )
        response = await call(self._stub.Discover, request, timeout=CALL_TIMEOUT)
        return [agent_from_proto(a) for a in response.agents]

    async def watch(self, *, skip_current: bool = False) -> AsyncIterator[AgentEvent]:
        """The namespace's agents, then every change as it happens, until the caller stops."""
        request = pb.WatchAgentsRequest(namespace=self._namespace, skip_current=skip_current)
        stream = self._stub.WatchAgents(request)
        try:
            async for response in stream:
                agent = agent_from_proto(response.agent) if response.HasField("agent") else None
                yield AgentEvent(_EVENT_KINDS[response.kind], agent)
        except grpc.aio.AioRpcError as err:
            raise rpc_error(err) from None
        finally:
            stream.cancel()


class AgentPresence:
    """Keeps an agent in the registry.

    It registers the agent, beats at a third of its lease, registers it again if the lease lapsed
    (a long pause, a server restart), and deregisters it on `aclose`.

    `status` and `load` are asked before each beat. With `transport` (and `keys`), each beat is
    also published as a Heartbeat envelope on the namespace's registry heartbeats topic, for
    agents that listen there rather than ask the registry.
    """

    def __init__(
        self,
        registry: RegistryClient,
        agent_id: str,
        *,
        kind: str,
        tenant: str = "default",
        project: str = "default",
        name: str = "",
        version: str = "",
        capabilities: Sequence[str] = (),
        topics: Sequence[tuple[str, TopicRole]] = (),
        metadata: Mapping[str, str] | None = None,
        lease: timedelta = DEFAULT_LEASE,
        status: Callable[[], AgentStatus] | None = None,
        load: Callable[[], float] | None = None,
        transport: Transport | None = None,
        keys: HmacKeys | None = None,
        prefix: str = "",
    ) -> None:
        self.registry = registry
        self.agent_id = agent_id
        self.kind, self.name, self.version = kind, name, version
        self.capabilities = tuple(capabilities)
        self._topics, self._metadata = tuple(topics), dict(metadata or {})
        self._tenant, self._project = tenant, project
        self._lease = lease
        self._status = status or (lambda: AgentStatus.HEALTHY)
        self._load = load
        self._transport, self._keys, self._prefix = transport, keys, prefix
        self.lease_id = ""
        self.registered = asyncio.Event()
        self._beating: asyncio.Task[None] | None = None
        self.beats = 0
        """Heartbeats the registry took (for tests and metrics)."""
        self._stopped = False

    @property
    def interval(self) -> float:
        """Seconds between beats: a third of the lease."""
        return self._lease.total_seconds() / 3

    async def start(self) -> None:
        """Register (as the `status` callback says, STARTING until then) and start beating."""
        await self._register(AgentStatus.STARTING)
        self._beating = asyncio.get_running_loop().create_task(
            self._beat_forever(), name=f"cmo-presence-{self.agent_id}"
        )

    async def aclose(self, reason: str = "shut down") -> None:
        """Stop beating and deregister (best effort: the lease lapses anyway)."""
        if self._stopped:
            return
        self._stopped = True
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
        if self.lease_id:
            try:
                await self.registry.deregister(self.agent_id, lease_id=self.lease_id, reason=reason)
            except RpcError as err:
                logger.info("could not deregister %s: %s", self.agent_id, err)

    async def beat(self) -> None:
        """One heartbeat now (registering again if the lease has lapsed)."""
        status = self._status()
        load = self._load() if self._load is not None else None
        try:
            await self.registry.heartbeat(self.agent_id, self.lease_id, status=status, load=load)
        except RpcError as err:
            if err.code != "FAILED_PRECONDITION":
                raise
            logger.warning("agent %s lost its lease (%s); registering again", self.agent_id, err.message)
            await self._register(status)
            return
        self.beats += 1
        await self._publish(status, load)

    async def _register(self, status: AgentStatus) -> None:
        registered = await self.registry.register(
            self.agent_id,
            kind=self.kind,
            name=self.name,
            version=self.version,
            capabilities=self.capabilities,
            topics=self._topics,
            metadata=self._metadata,
            lease=self._lease,
            status=status,
        )
        self.lease_id = registered.lease_id
        self.registered.set()

    async def _beat_forever(self) -> None:
        first = True
        while True:
            if not first:
                await asyncio.sleep(self.interval)
            first = False
            try:
                await self.beat()
            except RpcError as err:  # the server is away: try again at the next beat
                logger.warning("agent %s: heartbeat failed: %s", self.agent_id, err)
            except Exception:
                logger.exception("agent %s: heartbeat failed", self.agent_id)

    async def _publish(self, status: AgentStatus, load: float | None) -> None:
        if self._transport is None:
            return
        from cmo.a2a import DEFAULT_PREFIX, AgentId, Envelope, Heartbeat, Topic

        me = AgentId(self.kind, self.agent_id, self.version or "0")
        envelope = Envelope.build(
            Heartbeat(
                status=status.name.lower(),
                load=load,
                capabilities=list(self.capabilities),
                lease_seconds=int(self._lease.total_seconds()),
            ),
            sender=me,
            to=AgentId("registry", "cmo", "1"),
            tenant=self._tenant,
            project=self._project,
        )
        if self._keys is not None:
            envelope = self._keys.sign(envelope)
        topic = Topic.registry_heartbeats(self._tenant, self._project, prefix=self._prefix or DEFAULT_PREFIX)
        try:
            await self._transport.publish(str(topic), envelope.to_bytes(), message_id=envelope.meta.message_id)
        except Exception as err:  # the registry has the beat; the envelope is a courtesy
            logger.warning("agent %s: could not publish its heartbeat envelope: %s", self.agent_id, err)


def agent_from_proto(agent: pb.Agent) -> AgentInfo:
    """An agent from the wire."""
    return AgentInfo(
        tenant=agent.namespace.tenant,
        project=agent.namespace.project,
        agent_id=agent.agent_id,
        kind=agent.kind,
        name=agent.name,
        version=agent.version,
        capabilities=tuple(agent.capabilities),
        topics=tuple((t.topic, TopicRole(t.role)) for t in agent.topics),
        metadata=dict(agent.metadata),
        status=AgentStatus(agent.status),
        status_reason=agent.status_reason,
        load=agent.load,
        lease=agent.lease.ToTimedelta(),
        lease_expires_at=agent.lease_expires_at.ToDatetime(tzinfo=UTC),
        registered_at=agent.registered_at.ToDatetime(tzinfo=UTC),
        last_heartbeat_at=agent.last_heartbeat_at.ToDatetime(tzinfo=UTC),
        last_poll_at=agent.last_poll_at.ToDatetime(tzinfo=UTC) if agent.HasField("last_poll_at") else None,
        revision=agent.revision,
    )
