"""What the Postgres store's parts share: the pool, the fence of a worker's writes, one-statement calls."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from cmo_server.store._rows import fence

__all__ = ["FENCE", "Pool", "PooledStatements", "fence", "same"]

Pool = AsyncConnectionPool[AsyncConnection[TupleRow]]

# Every worker write names the attempt it holds and the worker holding its lease; a newer attempt,
# a finished step or another worker matches no row.
FENCE = """namespace = %(namespace)s AND run_id = %(run_id)s AND step_index = %(step_index)s
       AND attempt = %(attempt)s AND lease_owner = %(worker_id)s"""


def same(value: datetime) -> datetime:
    """Timestamps need no conversion: psycopg returns timestamptz as aware datetimes."""
    return value


class PooledStatements:
    """The pool of `PostgresStore`, and one statement on one of its connections, for the parts that need it."""

    _pool: Pool

    async def _fetchone(self, query: str, params: dict[str, Any]) -> TupleRow | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchone()

    async def _rowcount(self, query: str, params: dict[str, Any]) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, params)
            return cur.rowcount
