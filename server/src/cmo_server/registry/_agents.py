"""What the registry knows of an agent, and the moves its status may make."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from cmo_server.domain import Namespace

__all__ = [
    "LAPSED",
    "LIVE_STATUSES",
    "Agent",
    "AgentStatus",
    "AgentTopic",
    "HeartbeatOutcome",
    "Registration",
    "TopicRole",
    "may_move",
]


class AgentStatus(enum.IntEnum):
    """The proto's AgentStatus, by number."""

    STARTING = 1
    HEALTHY = 2
    DEGRADED = 3
    UNAVAILABLE = 4


LIVE_STATUSES = frozenset({AgentStatus.STARTING, AgentStatus.HEALTHY, AgentStatus.DEGRADED})
"""The statuses an agent holding a lease may have."""
LAPSED = "lease lapsed"
"""The status reason of an agent whose lease ran out."""


def may_move(old: AgentStatus, new: AgentStatus) -> bool:
    """STARTING -> HEALTHY <-> DEGRADED; anything -> UNAVAILABLE; a status may stay as it is.

    Only a registration leaves UNAVAILABLE, and nothing goes back to STARTING.
    """
    if new is AgentStatus.UNAVAILABLE or new is old:
        return True
    return old in LIVE_STATUSES and new is not AgentStatus.STARTING


class TopicRole(enum.IntEnum):
    """The proto's TopicRole, by number."""

    PUBLISH = 1
    SUBSCRIBE = 2


@dataclass(frozen=True, slots=True)
class AgentTopic:
    topic: str
    role: TopicRole


@dataclass(frozen=True, slots=True)
class Registration:
    """An agent announcing itself: the record it replaces (if any) is gone, a new lease begins."""

    namespace: Namespace
    agent_id: str
    kind: str
    name: str
    version: str
    capabilities: tuple[str, ...]
    topics: tuple[AgentTopic, ...]
    metadata: dict[str, str]
    lease: timedelta
    status: AgentStatus
    lease_id: str


@dataclass(frozen=True, slots=True)
class Agent:
    """An agent as the registry sees it now (a lapsed lease reads UNAVAILABLE)."""

    namespace: Namespace
    agent_id: str
    kind: str
    name: str
    version: str
    capabilities: tuple[str, ...]
    topics: tuple[AgentTopic, ...]
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
    lease_id: str = field(default="", repr=False)
    """The registration's fencing token; never sent to anyone but the agent that registered."""

    def seen_at(self, now: datetime) -> Agent:
        """This record as of `now`: UNAVAILABLE once its lease has lapsed, even if not yet recorded so."""
        if self.status is AgentStatus.UNAVAILABLE or self.lease_expires_at > now:
            return self
        return replace(self, status=AgentStatus.UNAVAILABLE, status_reason=LAPSED)


@dataclass(frozen=True, slots=True)
class HeartbeatOutcome:
    """A renewed lease: its new expiry, the status, and whether the status changed."""

    status: AgentStatus
    lease_expires_at: datetime
    changed: bool
