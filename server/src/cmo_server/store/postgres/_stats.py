"""Counts for the metrics endpoint on Postgres: ready tasks by queue, runs by status.

Both are read on a metrics scrape (cached a few seconds by the caller), never on the hot path.
"""

from __future__ import annotations

from cmo_server.domain import Namespace, RunStatus
from cmo_server.store.postgres._db import Pool

__all__ = ["PostgresStats"]

# The tasks table holds one row per unfinished run, so this reads at most the active runs; the
# visible_at filter is answered from tasks_ready (task_queue, graph_key, visible_at) without the heap
# when the visibility map is current (index-only scan).
COUNT_READY_TASKS = """
    SELECT namespace, task_queue, count(*) FROM tasks WHERE visible_at <= now() GROUP BY namespace, task_queue
"""
# runs has no index on status (one would be rewritten on every status change of every run): this is
# a sequential scan of runs, parallel on a large table. Postgres counts a few million narrow rows a
# second per core, so a table of millions of runs costs some hundreds of ms a scrape; the caller
# caches the answer for a few seconds so scrapes from several collectors share it.
COUNT_RUNS_BY_STATUS = "SELECT namespace, status, count(*) FROM runs GROUP BY namespace, status"
# The namespace's runs (through an index that starts with the namespace), each read for its version.
COUNT_RUNS_BY_GRAPH = """
    SELECT graph_id, graph_version, status, count(*) FROM runs WHERE namespace = %s
    GROUP BY graph_id, graph_version, status
"""


class PostgresStats:
    """The metrics part of `PostgresStore`."""

    _pool: Pool

    async def queue_depths(self) -> dict[tuple[Namespace, str], int]:
        """See `Store.queue_depths`."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(COUNT_READY_TASKS)
            return {(Namespace.parse(ns), queue): count for ns, queue, count in await cur.fetchall()}

    async def count_runs_by_status(self) -> dict[tuple[Namespace, RunStatus], int]:
        """See `Store.count_runs_by_status`."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(COUNT_RUNS_BY_STATUS)
            return {(Namespace.parse(ns), RunStatus(status)): count for ns, status, count in await cur.fetchall()}

    async def count_runs_by_graph(self, namespace: Namespace) -> dict[tuple[str, int, RunStatus], int]:
        """See `Store.count_runs_by_graph`."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(COUNT_RUNS_BY_GRAPH, (str(namespace),))
            rows = await cur.fetchall()
            return {(graph_id, version, RunStatus(status)): count for graph_id, version, status, count in rows}
