"""The registry's storage contract, on both backends (tests/integration/contract/test_agents.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from cmo_server.domain import Namespace
from cmo_server.registry._agents import Agent, AgentStatus, HeartbeatOutcome, Registration

__all__ = ["MAX_CANDIDATES", "AgentStore", "HeartbeatRefused"]

MAX_CANDIDATES = 1000
"""Agents a discovery with a version constraint weighs at most."""


class HeartbeatRefused(Exception):
    """A heartbeat or deregistration the record does not allow; `reason` is one of the class constants."""

    NOT_FOUND = "not_found"
    LAPSED = "lapsed"
    STALE = "stale"
    """The lease belongs to a newer registration."""
    MOVE = "move"
    """The status may not move that way; `status` is the current one."""

    def __init__(self, reason: str, status: AgentStatus | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class AgentStore(Protocol):
    """Agents, their capabilities and topics. Each method is one short transaction.

    A record's status as stored is what the agent (or a sweep) last set; every read returns it as
    of the database's clock, so a lapsed lease reads UNAVAILABLE before any sweep has recorded it.
    Every change of status or registration takes the next revision of the whole registry.
    """

    async def register_agent(self, registration: Registration) -> Agent:
        """Create or replace the agent's record (capabilities and topics too); a new lease from now."""

    async def heartbeat_agent(
        self,
        namespace: Namespace,
        agent_id: str,
        lease_id: str,
        *,
        status: AgentStatus | None,
        load: float | None,
    ) -> HeartbeatOutcome:
        """Renew the lease (by the lease length registered), setting status and load if given.

        UNAVAILABLE ends the lease now. Raises HeartbeatRefused: no such agent, a lapsed or
        UNAVAILABLE lease, another registration's lease, or a move `may_move` refuses.
        """

    async def deregister_agent(
        self, namespace: Namespace, agent_id: str, lease_id: str | None, *, reason: str
    ) -> tuple[Agent, bool]:
        """Make the agent UNAVAILABLE now, with `reason`; (the agent, whether it changed).

        `lease_id` None: whatever the lease. Raises HeartbeatRefused (NOT_FOUND, STALE).
        """

    async def get_agent(self, namespace: Namespace, agent_id: str) -> Agent | None:
        """The agent, or None."""

    async def list_agents(
        self,
        namespace: Namespace,
        *,
        statuses: Sequence[AgentStatus],
        kind: str,
        capability: str,
        after: str,
        limit: int,
    ) -> list[Agent]:
        """Agents by agent_id after `after`, filtered (empty filters match all)."""

    async def discover_agents(
        self,
        namespace: Namespace,
        *,
        capability: str,
        statuses: Sequence[AgentStatus],
        kind: str,
        limit: int,
        version_ok: Callable[[str], bool] | None = None,
    ) -> list[Agent]:
        """Agents with the capability: HEALTHY, then DEGRADED, then STARTING, each by load, ties at random.

        `version_ok` keeps only the agents whose version it accepts, among the first
        `MAX_CANDIDATES` in that order (their versions are read first, the chosen agents whole).
        """

    async def agents_since(self, namespace: Namespace, revision: int) -> list[Agent]:
        """The namespace's agents whose revision is above `revision`, by revision."""

    async def lapse_agents(self, *, limit: int) -> list[Agent]:
        """Record UNAVAILABLE for agents whose lease has lapsed (at most `limit`); those it changed.

        Safe on replicas: an agent is recorded once, by whichever sweep gets to it first.
        """

    async def note_polls(self, polls: Mapping[tuple[Namespace, str], datetime]) -> None:
        """Set the last poll of the registered agents among these (namespace, agent_id)."""

    async def unavailable_since(self, *, within: timedelta, limit: int) -> list[Agent]:
        """Agents that became UNAVAILABLE within the last `within` (the most recent first)."""

    async def purge_agents(self, *, unavailable_for: timedelta, limit: int) -> int:
        """Delete agents UNAVAILABLE for longer than that; how many."""

    async def watch_agents(self, changed: Callable[[Namespace, str, int], None], resync: Callable[[], None]) -> None:
        """Tell `changed` of every change other servers on this database make, until cancelled.

        `resync` is called when changes may have been missed (the push stopped and started again).
        A backend that cannot push (SQLite: one server per file) returns at once.
        """
