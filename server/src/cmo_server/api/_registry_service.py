"""RegistryService: check each field, call the registry, encode. The rules live in `cmo_server.registry`."""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from cmo.api.v1 import registry_service_pb2 as pb
from cmo_server.api._namespace import namespace_of, namespace_to_proto
from cmo_server.api._status import rpc, rpc_stream
from cmo_server.api._validate import check_id, check_range, check_text, duration_or
from cmo_server.errors import InvalidArgument, shown
from cmo_server.registry import (
    DEFAULT_LEASE,
    MAX_LEASE,
    MIN_LEASE,
    Agent,
    AgentStatus,
    AgentTopic,
    Registry,
    TopicRole,
)

__all__ = ["RegistryServicer", "agent_to_proto"]

AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}")
MAX_CAPABILITIES = 64
MAX_TOPICS = 64
MAX_TOPIC_LENGTH = 255
MAX_METADATA = 32
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 1024
MAX_VERSION = 64
MAX_REASON = 1024
MAX_PAGE = 1000
MAX_DISCOVER = 100
WATCH_KINDS = {
    "current": pb.WatchAgentsResponse.KIND_CURRENT,
    "synced": pb.WatchAgentsResponse.KIND_SYNCED,
    "changed": pb.WatchAgentsResponse.KIND_CHANGED,
}


class RegistryServicer:
    """Agents register, beat and leave; anyone in the namespace looks them up."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    @rpc
    async def RegisterAgent(
        self, request: pb.RegisterAgentRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterAgentResponse:
        """See the proto."""
        status = _status("status", request.status) or AgentStatus.STARTING
        if status is AgentStatus.UNAVAILABLE:
            raise InvalidArgument("status", "an agent registers as STARTING, HEALTHY or DEGRADED")
        lease = duration_or("lease", request.lease, request.HasField("lease"), DEFAULT_LEASE, MAX_LEASE)
        if lease < MIN_LEASE:
            raise InvalidArgument("lease", f"must be at least {MIN_LEASE.total_seconds():g}s")
        agent = await self._registry.register(
            namespace_of(request),
            _agent_id(request.agent_id),
            kind=_kind(request.kind),
            name=check_id("name", request.name, required=False),
            version=_version(request.version),
            capabilities=_capabilities(request.capabilities),
            topics=_topics(request.topics),
            metadata=_metadata(request.metadata),
            lease=lease,
            status=status,
        )
        return pb.RegisterAgentResponse(agent=agent_to_proto(agent), lease_id=agent.lease_id)

    @rpc
    async def Heartbeat(self, request: pb.HeartbeatRequest, context: grpc.aio.ServicerContext) -> pb.HeartbeatResponse:
        """See the proto."""
        load = None
        if request.HasField("load"):
            load = request.load
            if not (math.isfinite(load) and 0 <= load <= 1):
                raise InvalidArgument("load", f"must be between 0 and 1, got {load:g}")
        outcome = await self._registry.heartbeat(
            namespace_of(request),
            _agent_id(request.agent_id),
            check_id("lease_id", request.lease_id),
            status=_status("status", request.status),
            load=load,
        )
        return pb.HeartbeatResponse(lease_expires_at=_timestamp(outcome.lease_expires_at), status=int(outcome.status))  # type: ignore[arg-type]

    @rpc
    async def Deregister(
        self, request: pb.DeregisterRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeregisterResponse:
        """See the proto."""
        agent = await self._registry.deregister(
            namespace_of(request),
            _agent_id(request.agent_id),
            check_id("lease_id", request.lease_id, required=False) or None,
            reason=check_text("reason", request.reason, MAX_REASON),
        )
        return pb.DeregisterResponse(agent=agent_to_proto(agent))

    @rpc
    async def GetAgent(self, request: pb.GetAgentRequest, context: grpc.aio.ServicerContext) -> pb.GetAgentResponse:
        """See the proto."""
        agent = await self._registry.get(namespace_of(request), _agent_id(request.agent_id))
        return pb.GetAgentResponse(agent=agent_to_proto(agent))

    @rpc
    async def ListAgents(
        self, request: pb.ListAgentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAgentsResponse:
        """See the proto."""
        agents, token = await self._registry.list_agents(
            namespace_of(request),
            statuses=_statuses(request.statuses),
            kind=_kind(request.kind, required=False),
            capability=check_id("capability", request.capability, required=False),
            limit=check_range("page_size", request.page_size, 0, MAX_PAGE) or 100,
            page_token=request.page_token,
        )
        return pb.ListAgentsResponse(agents=[agent_to_proto(a) for a in agents], next_page_token=token)

    @rpc
    async def Discover(self, request: pb.DiscoverRequest, context: grpc.aio.ServicerContext) -> pb.DiscoverResponse:
        """See the proto."""
        version = None
        if request.version:
            try:
                version = SpecifierSet(check_text("version", request.version, MAX_VERSION * 4))
            except InvalidSpecifier:
                raise InvalidArgument(
                    "version", f"{shown(request.version)} is not a version constraint such as '>=1.2,<2'"
                ) from None
        agents = await self._registry.discover(
            namespace_of(request),
            check_id("capability", request.capability),
            statuses=_statuses(request.statuses),
            version=version,
            kind=_kind(request.kind, required=False),
            limit=check_range("limit", request.limit, 0, MAX_DISCOVER) or 10,
        )
        return pb.DiscoverResponse(agents=[agent_to_proto(a) for a in agents])

    @rpc_stream
    async def WatchAgents(
        self, request: pb.WatchAgentsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchAgentsResponse]:
        """See the proto."""
        events = self._registry.watch(namespace_of(request), skip_current=request.skip_current)
        try:
            async for event in events:
                agent = None if event.agent is None else agent_to_proto(event.agent)
                yield pb.WatchAgentsResponse(kind=WATCH_KINDS[event.kind], agent=agent)
        finally:
            await events.aclose()


def agent_to_proto(agent: Agent) -> pb.Agent:
    """An agent for the wire (its lease_id is not part of it)."""
    message = pb.Agent(
        namespace=namespace_to_proto(agent.namespace),
        agent_id=agent.agent_id,
        kind=agent.kind,
        name=agent.name,
        version=agent.version,
        capabilities=agent.capabilities,
        topics=[pb.AgentTopic(topic=t.topic, role=int(t.role)) for t in agent.topics],  # type: ignore[arg-type]
        metadata=agent.metadata,
        status=int(agent.status),  # type: ignore[arg-type]
        status_reason=agent.status_reason,
        load=agent.load,
        lease=_duration(agent.lease),
        lease_expires_at=_timestamp(agent.lease_expires_at),
        registered_at=_timestamp(agent.registered_at),
        last_heartbeat_at=_timestamp(agent.last_heartbeat_at),
        revision=agent.revision,
    )
    if agent.last_poll_at is not None:
        message.last_poll_at.CopyFrom(_timestamp(agent.last_poll_at))
    return message


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _duration(value: timedelta) -> Duration:
    duration = Duration()
    duration.FromTimedelta(value)
    return duration


def _agent_id(value: str) -> str:
    if not value:
        raise InvalidArgument("agent_id", "must not be empty")
    if AGENT_ID.fullmatch(value) is None:
        raise InvalidArgument(
            "agent_id", f"{shown(value)} is not an agent id: 1 to 128 characters of A-Z, a-z, 0-9 and ._:@-"
        )
    return value


def _kind(value: str, *, required: bool = True) -> str:
    if not value:
        return "agent" if required else ""
    if KIND.fullmatch(value) is None:
        raise InvalidArgument("kind", f"{shown(value)} is not a kind: a lower-case word of at most 32 characters")
    return value


def _version(value: str) -> str:
    check_text("version", value, MAX_VERSION)
    if value and (not value.isprintable() or any(c.isspace() for c in value)):
        raise InvalidArgument("version", "must be printable characters without white space")
    return value


def _status(field: str, value: int) -> AgentStatus | None:
    if value == 0:
        return None
    try:
        return AgentStatus(value)
    except ValueError:
        raise InvalidArgument(field, f"{value} is not an agent status") from None


def _statuses(values: Sequence[int]) -> list[AgentStatus]:
    statuses = []
    for i, value in enumerate(values):
        status = _status(f"statuses[{i}]", value)
        if status is None:
            raise InvalidArgument(f"statuses[{i}]", "must not be AGENT_STATUS_UNSPECIFIED")
        statuses.append(status)
    return statuses


def _capabilities(values: Sequence[str]) -> list[str]:
    if len(values) > MAX_CAPABILITIES:
        raise InvalidArgument("capabilities", f"has {len(values)} entries, the limit is {MAX_CAPABILITIES}")
    return [check_id(f"capabilities[{i}]", value) for i, value in enumerate(values)]


def _topics(values: Sequence[pb.AgentTopic]) -> list[AgentTopic]:
    if len(values) > MAX_TOPICS:
        raise InvalidArgument("topics", f"has {len(values)} entries, the limit is {MAX_TOPICS}")
    topics = []
    for i, value in enumerate(values):
        topic = value.topic
        if not topic or len(topic) > MAX_TOPIC_LENGTH or not topic.isprintable() or any(c.isspace() for c in topic):
            raise InvalidArgument(
                f"topics[{i}].topic", f"must be 1 to {MAX_TOPIC_LENGTH} printable characters without white space"
            )
        try:
            role = TopicRole(value.role)
        except ValueError:
            raise InvalidArgument(f"topics[{i}].role", "must be TOPIC_ROLE_PUBLISH or TOPIC_ROLE_SUBSCRIBE") from None
        topics.append(AgentTopic(topic, role))
    return topics


def _metadata(values: Mapping[str, str]) -> dict[str, str]:
    entries = dict(values)
    if len(entries) > MAX_METADATA:
        raise InvalidArgument("metadata", f"has {len(entries)} entries, the limit is {MAX_METADATA}")
    for key, value in entries.items():
        if not key or len(key) > MAX_METADATA_KEY:
            raise InvalidArgument("metadata", f"keys must be 1 to {MAX_METADATA_KEY} characters, got {shown(key)}")
        check_text(f"metadata[{key}]", value, MAX_METADATA_VALUE)
    return entries
