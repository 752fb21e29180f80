"""Which run asked an agent what, on Postgres: a lookup of the request's activity."""

from __future__ import annotations

from cmo.a2a.invoke import KIND_REQUEST, request_name
from cmo_server.domain import Namespace
from cmo_server.store.postgres._db import Pool

__all__ = ["PostgresRequests"]

SELECT_REQUESTING_RUN = """
    SELECT run_id FROM activities
     WHERE namespace = %(namespace)s AND kind = %(kind)s AND name = %(name)s LIMIT 1
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
