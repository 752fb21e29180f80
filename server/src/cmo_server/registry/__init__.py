"""The agent registry: who is there, what it can do, whether it is alive (its own store protocol)."""

from cmo_server.registry._agents import (
    LAPSED,
    LIVE_STATUSES,
    Agent,
    AgentStatus,
    AgentTopic,
    HeartbeatOutcome,
    Registration,
    TopicRole,
    may_move,
)
from cmo_server.registry._registry import DEFAULT_LEASE, MAX_LEASE, MIN_LEASE, Registry, WatchEvent
from cmo_server.registry._store import AgentStore, HeartbeatRefused

__all__ = [
    "DEFAULT_LEASE",
    "LAPSED",
    "LIVE_STATUSES",
    "MAX_LEASE",
    "MIN_LEASE",
    "Agent",
    "AgentStatus",
    "AgentStore",
    "AgentTopic",
    "HeartbeatOutcome",
    "HeartbeatRefused",
    "Registration",
    "Registry",
    "TopicRole",
    "WatchEvent",
    "may_move",
]
