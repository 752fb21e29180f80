"""The agent registry on Postgres (`AgentStore`), its changes pushed to every replica (migration 0012).

A heartbeat is one UPDATE of the agent's own row, with no read before it and no shared row
touched (a revision comes from a sequence, and only when the status changes), so a thousand
agents beating at once wait on nothing but the WAL. The rarer refusals are explained by a second
read.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from cmo_server.domain import Namespace
from cmo_server.registry import (
    LAPSED,
    LIVE_STATUSES,
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
from cmo_server.store.postgres._db import Pool

__all__ = ["AGENT_CHANGED", "PostgresAgents"]

logger = logging.getLogger(__name__)

AGENT_CHANGED = "cmo_agent_changed"
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0)
UNAVAILABLE = int(AgentStatus.UNAVAILABLE)
SEEN_STATUS = f"(CASE WHEN a.lease_expires_at <= now() THEN {UNAVAILABLE} ELSE a.status END)"
RANK = f"(CASE {SEEN_STATUS} WHEN 2 THEN 0 WHEN 3 THEN 1 WHEN 1 THEN 2 ELSE 3 END)"
# An agent as every read returns it: its status as of now, its capabilities and topics with it.
SELECT_AGENT = f"""
    SELECT a.namespace, a.agent_id, a.kind, a.name, a.version, a.metadata, {SEEN_STATUS},
           CASE WHEN a.lease_expires_at <= now() AND a.status <> {UNAVAILABLE} THEN '{LAPSED}'
                ELSE a.status_reason END,
           a.load, a.lease, a.lease_id, a.lease_expires_at, a.registered_at, a.last_heartbeat_at, a.last_poll_at,
           a.revision,
           ARRAY(SELECT c.capability FROM agent_capabilities c
                  WHERE c.namespace = a.namespace AND c.agent_id = a.agent_id ORDER BY c.capability),
           ARRAY(SELECT t.topic FROM agent_topics t
                  WHERE t.namespace = a.namespace AND t.agent_id = a.agent_id ORDER BY t.topic, t.role),
           ARRAY(SELECT t.role FROM agent_topics t
                  WHERE t.namespace = a.namespace AND t.agent_id = a.agent_id ORDER BY t.topic, t.role)
"""
KEY = "a.namespace = %(namespace)s AND a.agent_id = %(agent_id)s"

UPSERT = """
    INSERT INTO agents AS a (namespace, agent_id, kind, name, version, metadata, status, status_reason, load, lease,
                             lease_id, lease_expires_at, registered_at, last_heartbeat_at, revision, changed_at)
    VALUES (%(namespace)s, %(agent_id)s, %(kind)s, %(name)s, %(version)s, %(metadata)s, %(status)s, '', 0, %(lease)s,
            %(lease_id)s, now() + %(lease)s, now(), now(), nextval('agent_revisions'), now())
    ON CONFLICT (namespace, agent_id) DO UPDATE SET
        kind = excluded.kind, name = excluded.name, version = excluded.version, metadata = excluded.metadata,
        status = excluded.status, status_reason = '', load = 0, lease = excluded.lease, lease_id = excluded.lease_id,
        lease_expires_at = excluded.lease_expires_at, registered_at = excluded.registered_at,
        last_heartbeat_at = excluded.last_heartbeat_at, revision = excluded.revision, changed_at = excluded.changed_at
"""
PICK = f"""
    SELECT a.agent_id, a.version
      FROM agent_capabilities c JOIN agents a ON a.namespace = c.namespace AND a.agent_id = c.agent_id
     WHERE c.namespace = %(namespace)s AND c.capability = %(capability)s
       AND (%(kind)s = '' OR a.kind = %(kind)s) AND {SEEN_STATUS} = ANY(%(statuses)s)
     ORDER BY {RANK}, a.load, random() LIMIT %(limit)s
"""
# changed_at = now() afterwards says this statement changed the status (now() is the statement's
# transaction start, which no earlier change can have).
HEARTBEAT = f"""
    UPDATE agents AS a SET
        status = %(status)s,
        last_heartbeat_at = now(),
        lease_expires_at = CASE WHEN %(status)s = {UNAVAILABLE} THEN now() ELSE now() + a.lease END,
        load = COALESCE(%(load)s, a.load),
        status_reason = CASE WHEN %(status)s <> a.status THEN '' ELSE a.status_reason END,
        revision = CASE WHEN %(status)s <> a.status THEN nextval('agent_revisions') ELSE a.revision END,
        changed_at = CASE WHEN %(status)s <> a.status THEN now() ELSE a.changed_at END
     WHERE {KEY} AND a.lease_id = %(lease_id)s AND a.lease_expires_at > now() AND a.status = ANY(%(from)s)
    RETURNING a.lease_expires_at, a.changed_at = now(), a.status
"""
# A heartbeat that keeps its status names none: the row's own is kept.
KEEP_STATUS_HEARTBEAT = HEARTBEAT.replace("%(status)s", "a.status")
DEREGISTER = f"""
    UPDATE agents AS a SET status = {UNAVAILABLE}, status_reason = %(reason)s, revision = nextval('agent_revisions'),
                           lease_expires_at = LEAST(a.lease_expires_at, now()), changed_at = now()
     WHERE {KEY} AND a.status <> {UNAVAILABLE}
"""
LAPSE = f"""
    UPDATE agents AS a SET status = {UNAVAILABLE}, status_reason = '{LAPSED}', revision = nextval('agent_revisions'),
                           changed_at = now()
      FROM (SELECT namespace, agent_id FROM agents
             WHERE status <> {UNAVAILABLE} AND lease_expires_at <= now()
             ORDER BY lease_expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) AS due
     WHERE a.namespace = due.namespace AND a.agent_id = due.agent_id
       AND a.status <> {UNAVAILABLE} AND a.lease_expires_at <= now()
    RETURNING a.namespace, a.agent_id
"""
NOTE_POLLS = """
    UPDATE agents AS a SET last_poll_at = GREATEST(a.last_poll_at, p.at)
      FROM (SELECT unnest(%(namespaces)s::text[]) AS namespace, unnest(%(ids)s::text[]) AS agent_id,
                   unnest(%(ats)s::timestamptz[]) AS at) AS p
     WHERE a.namespace = p.namespace AND a.agent_id = p.agent_id
"""
PURGE = f"""
    DELETE FROM agents WHERE (namespace, agent_id) IN (
        SELECT namespace, agent_id FROM agents
         WHERE status = {UNAVAILABLE} AND changed_at < now() - %(age)s LIMIT %(limit)s)
"""


class PostgresAgents:
    """The `AgentStore` part of `PostgresStore`."""

    _pool: Pool
    _url: str

    async def register_agent(self, registration: Registration) -> Agent:
        """See `AgentStore.register_agent`."""
        r = registration
        key = {"namespace": str(r.namespace), "agent_id": r.agent_id}
        params = {
            **key,
            "kind": r.kind,
            "name": r.name,
            "version": r.version,
            "metadata": json.dumps(r.metadata, sort_keys=True),
            "status": int(r.status),
            "lease": r.lease,
            "lease_id": r.lease_id,
        }
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(UPSERT, params)
            await conn.execute(
                "DELETE FROM agent_capabilities WHERE namespace = %s AND agent_id = %s", (*key.values(),)
            )
            await conn.execute(
                """INSERT INTO agent_capabilities (namespace, capability, agent_id)
                   SELECT %(namespace)s, unnest(%(capabilities)s::text[]), %(agent_id)s""",
                {**key, "capabilities": list(r.capabilities)},
            )
            await conn.execute(f"DELETE FROM agent_topics a WHERE {KEY}", key)
            await conn.execute(
                """INSERT INTO agent_topics (namespace, agent_id, topic, role)
                   SELECT %(namespace)s, %(agent_id)s, unnest(%(topics)s::text[]), unnest(%(roles)s::smallint[])""",
                {**key, "topics": [t.topic for t in r.topics], "roles": [int(t.role) for t in r.topics]},
            )
            agents = await _select(conn, KEY, key)
        return agents[0]

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
        params: dict[str, Any] = {
            "namespace": str(namespace),
            "agent_id": agent_id,
            "lease_id": lease_id,
            "load": load,
            "from": [int(s) for s in LIVE_STATUSES if status is None or may_move(s, status)],
        }
        if status is not None:
            params["status"] = int(status)
        async with self._pool.connection() as conn:
            cur = await conn.execute(HEARTBEAT if status is not None else KEEP_STATUS_HEARTBEAT, params)
            row = await cur.fetchone()
            if row is None:
                raise await _refusal(conn, params)
        return HeartbeatOutcome(AgentStatus(row[2]), row[0], bool(row[1]))

    async def deregister_agent(
        self, namespace: Namespace, agent_id: str, lease_id: str | None, *, reason: str
    ) -> tuple[Agent, bool]:
        """See `AgentStore.deregister_agent`."""
        key = {"namespace": str(namespace), "agent_id": agent_id}
        async with self._pool.connection() as conn, conn.transaction():
            found = await (
                await conn.execute(f"SELECT a.lease_id FROM agents a WHERE {KEY} FOR UPDATE", key)
            ).fetchone()
            if found is None:
                raise HeartbeatRefused(HeartbeatRefused.NOT_FOUND)
            if lease_id is not None and found[0] != lease_id:
                raise HeartbeatRefused(HeartbeatRefused.STALE)
            changed = (await conn.execute(DEREGISTER, {**key, "reason": reason})).rowcount == 1
            agents = await _select(conn, KEY, key)
        return agents[0], changed

    async def get_agent(self, namespace: Namespace, agent_id: str) -> Agent | None:
        """See `AgentStore.get_agent`."""
        async with self._pool.connection() as conn:
            agents = await _select(conn, KEY, {"namespace": str(namespace), "agent_id": agent_id})
        return agents[0] if agents else None

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
        params: dict[str, Any] = {"namespace": str(namespace), "after": after, "limit": limit}
        where = ["a.namespace = %(namespace)s", "a.agent_id > %(after)s"]
        if kind:
            where.append("a.kind = %(kind)s")
            params["kind"] = kind
        if capability:
            where.append(
                """EXISTS (SELECT 1 FROM agent_capabilities c WHERE c.namespace = a.namespace
                           AND c.capability = %(capability)s AND c.agent_id = a.agent_id)"""
            )
            params["capability"] = capability
        if statuses:
            where.append(f"{SEEN_STATUS} = ANY(%(statuses)s)")
            params["statuses"] = [int(s) for s in statuses]
        async with self._pool.connection() as conn:
            return await _select(conn, " AND ".join(where), params, order="a.agent_id LIMIT %(limit)s")

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
            "statuses": [int(s) for s in statuses],
            "limit": limit if version_ok is None else MAX_CANDIDATES,
        }
        async with self._pool.connection() as conn:
            # The agents are picked first, by their ids and versions, and only those read whole.
            picked = await (await conn.execute(PICK, params)).fetchall()
            ids = [agent_id for agent_id, version in picked if version_ok is None or version_ok(version)][:limit]
            if not ids:
                return []
            found = await _select(
                conn, "a.namespace = %(namespace)s AND a.agent_id = ANY(%(ids)s)", {**params, "ids": ids}
            )
        order = {agent_id: i for i, agent_id in enumerate(ids)}
        return sorted(found, key=lambda a: order[a.agent_id])

    async def agents_since(self, namespace: Namespace, revision: int) -> list[Agent]:
        """See `AgentStore.agents_since`."""
        params = {"namespace": str(namespace), "revision": revision}
        async with self._pool.connection() as conn:
            return await _select(
                conn, "a.namespace = %(namespace)s AND a.revision > %(revision)s", params, order="a.revision"
            )

    async def lapse_agents(self, *, limit: int) -> list[Agent]:
        """See `AgentStore.lapse_agents`."""
        async with self._pool.connection() as conn:
            async with conn.transaction():
                due = await (await conn.execute(LAPSE, {"limit": limit})).fetchall()
            if not due:
                return []
            params = {"namespaces": [r[0] for r in due], "ids": [r[1] for r in due]}
            return await _select(
                conn,
                "(a.namespace, a.agent_id) IN (SELECT unnest(%(namespaces)s::text[]), unnest(%(ids)s::text[]))",
                params,
                order="a.revision",
            )

    async def note_polls(self, polls: Mapping[tuple[Namespace, str], datetime]) -> None:
        """See `AgentStore.note_polls`."""
        if not polls:
            return
        params = {
            "namespaces": [str(ns) for ns, _ in polls],
            "ids": [agent_id for _, agent_id in polls],
            "ats": list(polls.values()),
        }
        async with self._pool.connection() as conn:
            await conn.execute(NOTE_POLLS, params)

    async def unavailable_since(self, *, within: timedelta, limit: int) -> list[Agent]:
        """See `AgentStore.unavailable_since`."""
        params = {"within": within, "limit": limit}
        where = f"a.status = {UNAVAILABLE} AND a.changed_at > now() - %(within)s"
        async with self._pool.connection() as conn:
            return await _select(conn, where, params, order="a.changed_at DESC LIMIT %(limit)s")

    async def purge_agents(self, *, unavailable_for: timedelta, limit: int) -> int:
        """See `AgentStore.purge_agents`."""
        async with self._pool.connection() as conn:
            return (await conn.execute(PURGE, {"age": unavailable_for, "limit": limit})).rowcount

    async def watch_agents(self, changed: Callable[[Namespace, str, int], None], resync: Callable[[], None]) -> None:
        """See `AgentStore.watch_agents`: listens until cancelled, reconnecting when the connection breaks."""
        failures = 0
        listened = False
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {AGENT_CHANGED}")
                    failures = 0
                    if listened:
                        resync()  # what changed while nobody listened is read again
                    listened = True
                    async for note in conn.notifies():
                        _deliver(changed, note.payload)
            except psycopg.Error as err:
                if failures == 0:
                    logger.warning("lost the agent notification connection (%s); listening again", err)
                failures += 1
            await asyncio.sleep(RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)])


def _deliver(changed: Callable[[Namespace, str, int], None], payload: str) -> None:
    try:
        namespace, agent_id, revision = payload.split("\t")
        changed(Namespace.parse(namespace), agent_id, int(revision))
    except ValueError:
        logger.warning("ignored a malformed %s notification: %r", AGENT_CHANGED, payload)


async def _refusal(conn: AsyncConnection[TupleRow], params: dict[str, Any]) -> HeartbeatRefused:
    """Why a heartbeat matched no row."""
    row = await (
        await conn.execute(
            f"SELECT a.status, a.lease_id, a.lease_expires_at <= now() FROM agents a WHERE {KEY}", params
        )
    ).fetchone()
    if row is None:
        return HeartbeatRefused(HeartbeatRefused.NOT_FOUND)
    status, held, lapsed = AgentStatus(row[0]), row[1], row[2]
    if held != params["lease_id"]:
        return HeartbeatRefused(HeartbeatRefused.STALE)
    if status is AgentStatus.UNAVAILABLE or lapsed:
        return HeartbeatRefused(HeartbeatRefused.LAPSED)
    return HeartbeatRefused(HeartbeatRefused.MOVE, status)


async def _select(
    conn: AsyncConnection[TupleRow], where: str, params: Mapping[str, Any], *, order: str = "a.agent_id"
) -> list[Agent]:
    cur = await conn.execute(f"{SELECT_AGENT} FROM agents a WHERE {where} ORDER BY {order}", params)
    return [_agent(row) for row in await cur.fetchall()]


def _agent(row: Any) -> Agent:
    (namespace, agent_id, kind, name, version, metadata, status, reason, load, lease, lease_id, expires,
     registered, beat, poll, revision, capabilities, topics, roles) = row  # fmt: skip
    return Agent(
        namespace=Namespace.parse(namespace),
        agent_id=agent_id,
        kind=kind,
        name=name,
        version=version,
        capabilities=tuple(capabilities),
        topics=tuple(AgentTopic(t, TopicRole(r)) for t, r in zip(topics, roles, strict=True)),
        metadata=dict(metadata),
        status=AgentStatus(status),
        status_reason=reason,
        load=load,
        lease=lease,
        lease_expires_at=expires,
        registered_at=registered,
        last_heartbeat_at=beat,
        last_poll_at=poll,
        revision=revision,
        lease_id=lease_id,
    )
