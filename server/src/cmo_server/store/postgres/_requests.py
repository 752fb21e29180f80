"""Which run asked an agent what, on Postgres: lookups of the requests' activities."""

from __future__ import annotations

from cmo.a2a.invoke import KIND_REQUEST, addressed_prefix, request_name
from cmo_server.domain import Namespace
from cmo_server.store.postgres._db import Pool

__all__ = ["PostgresRequests"]

SELECT_REQUESTING_RUN = """
    SELECT run_id FROM activities
     WHERE namespace = %(namespace)s AND kind = %(kind)s AND name = %(name)s LIMIT 1
"""

# From the namespace's unfinished runs (one task row each), the requests their current step made
# of this agent: the step recorded {"agent_id": ..., "message_id": ...} as the request's result.
SELECT_AWAITING = """
    SELECT a.run_id, a.name FROM tasks t
      JOIN activities a ON a.namespace = t.namespace AND a.run_id = t.run_id AND a.step_index = t.step_index
     WHERE t.namespace = %(namespace)s AND a.kind = %(kind)s
       AND substring(a.result FROM 1 FOR %(length)s) = %(prefix)s
"""


class PostgresRequests:
    """The A2A request part of `PostgresStore`."""

    _pool: Pool

    async def run_of_request(self, namespace: Namespace, message_id: str) -> str | None:
        """See `Store.run_of_request`."""
        params = {"namespace": str(namespace), "kind": KIND_REQUEST, "name": request_name(message_id)}
        async with self._pool.connection() as conn:
            row = await (await conn.execute(SELECT_REQUESTING_RUN, params)).fetchone()
        return None if row is None else str(row[0])

    async def requests_awaiting(self, namespace: Namespace, agent_id: str) -> list[tuple[str, str]]:
        """See `Store.requests_awaiting`."""
        prefix = addressed_prefix(agent_id)
        params = {"namespace": str(namespace), "kind": KIND_REQUEST, "prefix": prefix, "length": len(prefix)}
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(SELECT_AWAITING, params)).fetchall()
        return [(str(run_id), str(name)) for run_id, name in rows]
