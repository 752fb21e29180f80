"""The agent registry on SQLite (`AgentStore`): one server per file, so nothing to push."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from cmo_server.domain import Namespace
from cmo_server.registry import (
    LAPSED,
    Agent,
    AgentStatus,
    AgentTopic,
    HeartbeatOutcome,
    HeartbeatRefused,
    Registration,
    TopicRole,
    may_move,
)
from cmo_server.registry._store import MAX_CANDIDATES
from cmo_server.store.sqlite._db import Transaction, dt, now_us, us

__all__ = ["SqliteAgents"]

UNAVAILABLE = int(AgentStatus.UNAVAILABLE)
COLUMNS = """namespace, agent_id, kind, name, version, metadata, status, status_reason, load, lease_us,
             lease_id, lease_expires_at, registered_at, last_heartbeat_at, last_poll_at, revision"""
# The status as of :now: a lapsed lease reads UNAVAILABLE before a sweep records it.
SEEN_STATUS = f"(CASE WHEN lease_expires_at <= :now THEN {UNAVAILABLE} ELSE status END)"
RANK = f"(CASE {SEEN_STATUS} WHEN 2 THEN 0 WHEN 3 THEN 1 WHEN 1 THEN 2 ELSE 3 END)"
NEXT_REVISION = "(SELECT COALESCE(MAX(revision), 0) + 1 FROM agents)"

UPSERT = f"""
    INSERT INTO agents ({COLUMNS}, changed_at)
    VALUES (:namespace, :agent_id, :kind, :name, :version, :metadata, :status, '', 0, :lease_us, :lease_id,
            :now + :lease_us, :now, :now, NULL, {NEXT_REVISION}, :now)
    ON CONFLICT (namespace, agent_id) DO UPDATE SET
        kind = excluded.kind, name = excluded.name, version = excluded.version, metadata = excluded.metadata,
        status = excluded.status, status_reason = '', load = 0, lease_us = excluded.lease_us,
        lease_id = excluded.lease_id, lease_expires_at = excluded.lease_expires_at,
        registered_at = excluded.registered_at, last_heartbeat_at = excluded.last_heartbeat_at,
        revision = excluded.revision, changed_at = excluded.changed_at
"""
KEY = "namespace = :namespace AND agent_id = :agent_id"


class SqliteAgents:
    """The `AgentStore` part of `SqliteStore`."""

    _conn: sqlite3.Connection

    async def register_agent(self, registration: Registration) -> Agent:
        """See `AgentStore.register_agent`."""
        r = registration
        key = {"namespace": str(r.namespace), "agent_id": r.agent_id}
        now = now_us()
        params: dict[str, Any] = {
            **key,
            "kind": r.kind,
            "name": r.name,
            "version": r.version,
            "metadata": json.dumps(r.metadata, sort_keys=True),
            "status": int(r.status),
            "lease_us": us(r.lease),
            "lease_id": r.lease_id,
            "now": now,
        }
        with Transaction(self._conn) as conn:
            conn.execute(UPSERT, params)
            conn.execute(f"DELETE FROM agent_capabilities WHERE {KEY}", key)
            conn.executemany(
                "INSERT INTO agent_capabilities (namespace, capability, agent_id) VALUES (?, ?, ?)",
                [(key["namespace"], c, r.agent_id) for c in r.capabilities],
            )
            conn.execute(f"DELETE FROM agent_topics WHERE {KEY}", key)
            conn.executemany(
                "INSERT INTO agent_topics (namespace, agent_id, topic, role) VALUES (?, ?, ?, ?)",
                [(key["namespace"], r.agent_id, t.topic, int(t.role)) for t in r.topics],
            )
            agent = _one(conn, r.namespace, r.agent_id, now)
        assert agent is not None
        return agent

    async def heartbeat_agent(
        self,
        namespace: Namespace,
        agent_id: str,
        lease_id: str,
        *,
        status: AgentStatus | None,
        load: float | None,
    ) -> HeartbeatOutcome:
        """See `AgentStore.heartbeat_agent`."""
        key = {"namespace": str(namespace), "agent_id": agent_id}
        now = now_us()
        with Transaction(self._conn) as conn:
            row = conn.execute(f"SELECT status, lease_id, lease_expires_at, lease_us FROM agents WHERE {KEY}", key)
            found = row.fetchone()
            if found is None:
                raise HeartbeatRefused(HeartbeatRefused.NOT_FOUND)
            stored, held, expires, lease_us = AgentStatus(found[0]), found[1], found[2], found[3]
            if held != lease_id:
                raise HeartbeatRefused(HeartbeatRefused.STALE)
            if stored is AgentStatus.UNAVAILABLE or expires <= now:
                raise HeartbeatRefused(HeartbeatRefused.LAPSED)
            new = stored if status is None else status
            if not may_move(stored, new):
                raise HeartbeatRefused(HeartbeatRefused.MOVE, stored)
            changed = new is not stored
            expires = now if new is AgentStatus.UNAVAILABLE else now + lease_us
            conn.execute(
                f"""UPDATE agents SET status = :status, last_heartbeat_at = :now, lease_expires_at = :expires,
                           load = COALESCE(:load, load),
                           status_reason = CASE WHEN :changed THEN '' ELSE status_reason END,
                           revision = CASE WHEN :changed THEN {NEXT_REVISION} ELSE revision END,
                           changed_at = CASE WHEN :changed THEN :now ELSE changed_at END
                     WHERE {KEY}""",
                {**key, "status": int(new), "now": now, "expires": expires, "load": load, "changed": changed},
            )
        return HeartbeatOutcome(new, dt(expires), changed)

    async def deregister_agent(
        self, namespace: Namespace, agent_id: str, lease_id: str | None, *, reason: str
    ) -> tuple[Agent, bool]:
        """See `AgentStore.deregister_agent`."""
        key = {"namespace": str(namespace), "agent_id": agent_id}
        now = now_us()
        with Transaction(self._conn) as conn:
            found = conn.execute(f"SELECT status, lease_id FROM agents WHERE {KEY}", key).fetchone()
            if found is None:
                raise HeartbeatRefused(HeartbeatRefused.NOT_FOUND)
            if lease_id is not None and found[1] != lease_id:
                raise HeartbeatRefused(HeartbeatRefused.STALE)
            changed = found[0] != UNAVAILABLE
            if changed:
                conn.execute(
                    f"""UPDATE agents SET status = {UNAVAILABLE}, status_reason = :reason, revision = {NEXT_REVISION},
                               lease_expires_at = MIN(lease_expires_at, :now), changed_at = :now
                         WHERE {KEY}""",
                    {**key, "reason": reason, "now": now},
                )
            agent = _one(conn, namespace, agent_id, now)
        assert agent is not None
        return agent, changed

    async def get_agent(self, namespace: Namespace, agent_id: str) -> Agent | None:
        """See `AgentStore.get_agent`."""
        return _one(self._conn, namespace, agent_id, now_us())

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
        """See `AgentStore.list_agents`."""
        params: dict[str, Any] = {"namespace": str(namespace), "after": after, "limit": limit, "now": now_us()}
        where = ["namespace = :namespace", "agent_id > :after"]
        if kind:
            where.append("kind = :kind")
            params["kind"] = kind
        if capability:
            where.append(
                """EXISTS (SELECT 1 FROM agent_capabilities c WHERE c.namespace = agents.namespace
                           AND c.capability = :capability AND c.agent_id = agents.agent_id)"""
            )
            params["capability"] = capability
        if statuses:
            where.append(f"{SEEN_STATUS} IN ({', '.join(str(int(s)) for s in statuses)})")
        query = f"SELECT {COLUMNS} FROM agents WHERE {' AND '.join(where)} ORDER BY agent_id LIMIT :limit"
        return _with_parts(self._conn, self._conn.execute(query, params).fetchall(), params["now"])

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
        """See `AgentStore.discover_agents`."""
        params: dict[str, Any] = {
            "namespace": str(namespace),
            "capability": capability,
            "kind": kind,
            "limit": limit if version_ok is None else MAX_CANDIDATES,
            "now": now_us(),
        }
        query = f"""
            SELECT a.agent_id, a.version
              FROM agent_capabilities c JOIN agents a ON a.namespace = c.namespace AND a.agent_id = c.agent_id
             WHERE c.namespace = :namespace AND c.capability = :capability AND (:kind = '' OR a.kind = :kind)
               AND {SEEN_STATUS} IN ({", ".join(str(int(s)) for s in statuses)})
             ORDER BY {RANK}, a.load, random()
             LIMIT :limit
        """
        picked = self._conn.execute(query, params).fetchall()
        ids = [agent_id for agent_id, version in picked if version_ok is None or version_ok(version)][:limit]
        agents = [_one(self._conn, namespace, agent_id, params["now"]) for agent_id in ids]
        return [a for a in agents if a is not None]

    async def agents_since(self, namespace: Namespace, revision: int) -> list[Agent]:
        """See `AgentStore.agents_since`."""
        now = now_us()
        rows = self._conn.execute(
            f"SELECT {COLUMNS} FROM agents WHERE namespace = ? AND revision > ? ORDER BY revision",
            (str(namespace), revision),
        ).fetchall()
        return _with_parts(self._conn, rows, now)

    async def lapse_agents(self, *, limit: int) -> list[Agent]:
        """See `AgentStore.lapse_agents`."""
        now = now_us()
        with Transaction(self._conn) as conn:
            due = conn.execute(
                f"""SELECT namespace, agent_id FROM agents WHERE status <> {UNAVAILABLE} AND lease_expires_at <= ?
                     ORDER BY lease_expires_at LIMIT ?""",
                (now, limit),
            ).fetchall()
            for namespace, agent_id in due:
                conn.execute(
                    f"""UPDATE agents SET status = {UNAVAILABLE}, status_reason = :reason, revision = {NEXT_REVISION},
                               changed_at = :now
                         WHERE {KEY}""",
                    {"namespace": namespace, "agent_id": agent_id, "reason": LAPSED, "now": now},
                )
            agents = [_one(conn, Namespace.parse(ns), agent_id, now) for ns, agent_id in due]
        return [a for a in agents if a is not None]

    async def note_polls(self, polls: Mapping[tuple[Namespace, str], datetime]) -> None:
        """See `AgentStore.note_polls`."""
        if not polls:
            return
        with Transaction(self._conn) as conn:
            conn.executemany(
                """UPDATE agents SET last_poll_at = MAX(COALESCE(last_poll_at, 0), ?)
                    WHERE namespace = ? AND agent_id = ?""",
                [(int(at.timestamp() * 1_000_000), str(ns), agent_id) for (ns, agent_id), at in polls.items()],
            )

    async def unavailable_since(self, *, within: timedelta, limit: int) -> list[Agent]:
        """See `AgentStore.unavailable_since`."""
        now = now_us()
        rows = self._conn.execute(
            f"""SELECT {COLUMNS} FROM agents WHERE status = {UNAVAILABLE} AND changed_at > ?
                 ORDER BY changed_at DESC LIMIT ?""",
            (now - us(within), limit),
        ).fetchall()
        return _with_parts(self._conn, rows, now)

    async def purge_agents(self, *, unavailable_for: timedelta, limit: int) -> int:
        """See `AgentStore.purge_agents`."""
        with Transaction(self._conn) as conn:
            cur = conn.execute(
                f"""DELETE FROM agents WHERE rowid IN (
                        SELECT rowid FROM agents WHERE status = {UNAVAILABLE} AND changed_at < ? LIMIT ?)""",
                (now_us() - us(unavailable_for), limit),
            )
            return cur.rowcount

    async def watch_agents(self, changed: Callable[[Namespace, str, int], None], resync: Callable[[], None]) -> None:
        """See `AgentStore.watch_agents`: no other server writes this file."""
        return


def _one(conn: sqlite3.Connection, namespace: Namespace, agent_id: str, now: int) -> Agent | None:
    row = conn.execute(
        f"SELECT {COLUMNS} FROM agents WHERE namespace = ? AND agent_id = ?", (str(namespace), agent_id)
    ).fetchone()
    return None if row is None else _with_parts(conn, [row], now)[0]


def _with_parts(conn: sqlite3.Connection, rows: list[Any], now: int) -> list[Agent]:
    """Agents from their rows, with their capabilities and topics (one query each for all of them)."""
    if not rows:
        return []
    keys = [(row[0], row[1]) for row in rows]
    pairs = " OR ".join("(namespace = ? AND agent_id = ?)" for _ in keys)
    flat = [part for key in keys for part in key]
    capabilities: dict[tuple[str, str], list[str]] = {k: [] for k in keys}
    for ns, agent_id, capability in conn.execute(
        f"SELECT namespace, agent_id, capability FROM agent_capabilities WHERE {pairs} ORDER BY capability", flat
    ):
        capabilities[(ns, agent_id)].append(capability)
    topics: dict[tuple[str, str], list[AgentTopic]] = {k: [] for k in keys}
    for ns, agent_id, topic, role in conn.execute(
        f"SELECT namespace, agent_id, topic, role FROM agent_topics WHERE {pairs} ORDER BY topic, role", flat
    ):
        topics[(ns, agent_id)].append(AgentTopic(topic, TopicRole(role)))
    return [_agent(row, capabilities[(row[0], row[1])], topics[(row[0], row[1])]).seen_at(dt(now)) for row in rows]


def _agent(row: Any, capabilities: list[str], topics: list[AgentTopic]) -> Agent:
    (namespace, agent_id, kind, name, version, metadata, status, reason, load, lease_us, lease_id, expires,
     registered, beat, poll, revision) = row  # fmt: skip
    return Agent(
        namespace=Namespace.parse(namespace),
        agent_id=agent_id,
        kind=kind,
        name=name,
        version=version,
        capabilities=tuple(capabilities),
        topics=tuple(topics),
        metadata=json.loads(metadata),
        status=AgentStatus(status),
        status_reason=reason,
        load=load,
        lease=timedelta(microseconds=lease_us),
        lease_expires_at=dt(expires),
        registered_at=dt(registered),
        last_heartbeat_at=dt(beat),
        last_poll_at=None if poll is None else dt(poll),
        revision=revision,
        lease_id=lease_id,
    )
