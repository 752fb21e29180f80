"""Retention on Postgres: prune ended runs, and tell which blobs are still referenced."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cmo_server.blob import manifest_digests
from cmo_server.domain import Namespace, RunStatus
from cmo_server.store._retention import MANIFEST_COLUMNS
from cmo_server.store.postgres._db import Pool

__all__ = ["PostgresRetention"]

# One statement: the runs and everything that hangs off them go together. SKIP LOCKED lets
# replicas pruning at once take different runs; the foreign keys are checked at its end.
PRUNE_RUNS = """
    WITH doomed AS (
        SELECT namespace, run_id FROM runs
         WHERE completed_at < %(before)s AND status = ANY(%(statuses)s)
           AND (%(namespace)s::text IS NULL OR namespace = %(namespace)s)
         ORDER BY completed_at LIMIT %(limit)s
           FOR UPDATE SKIP LOCKED
    ), activities_gone AS (
        DELETE FROM activities WHERE (namespace, run_id) IN (SELECT namespace, run_id FROM doomed)
    ), steps_gone AS (
        DELETE FROM steps WHERE (namespace, run_id) IN (SELECT namespace, run_id FROM doomed)
    ), signals_gone AS (
        DELETE FROM signals WHERE (namespace, run_id) IN (SELECT namespace, run_id FROM doomed)
    ), artifacts_gone AS (
        DELETE FROM artifacts WHERE (namespace, run_id) IN (SELECT namespace, run_id FROM doomed)
    )
    DELETE FROM runs WHERE (namespace, run_id) IN (SELECT namespace, run_id FROM doomed) RETURNING run_id
"""
COUNT_PRUNABLE = """
    SELECT count(*) FROM runs
     WHERE completed_at < %(before)s AND status = ANY(%(statuses)s)
       AND (%(namespace)s::text IS NULL OR namespace = %(namespace)s)
"""
# A manifest starts with a NUL byte, which no JSON payload does.
MANIFESTS = " UNION ALL ".join(
    f"SELECT {column} FROM {table} WHERE substring({column} FROM 1 FOR 1) = '\\x00'::bytea"
    for table, column in MANIFEST_COLUMNS
)
ARTIFACT_DIGESTS = "SELECT DISTINCT digest FROM artifacts"


class PostgresRetention:
    """The retention part of `PostgresStore`."""

    _pool: Pool

    async def prune_runs(
        self,
        *,
        ended_before: datetime,
        statuses: Sequence[RunStatus],
        limit: int,
        namespace: Namespace | None = None,
        dry_run: bool = False,
    ) -> int:
        """See `Store.prune_runs`."""
        params = {
            "before": ended_before,
            "statuses": [int(s) for s in statuses],
            "limit": limit,
            "namespace": None if namespace is None else str(namespace),
        }
        async with self._pool.connection() as conn:
            if dry_run:
                row = await (await conn.execute(COUNT_PRUNABLE, params)).fetchone()
                return min(int(row[0]) if row else 0, limit)
            cur = await conn.execute(PRUNE_RUNS, params)
            return cur.rowcount

    async def referenced_blobs(self) -> set[str]:
        """See `Store.referenced_blobs`."""
        found: set[str] = set()
        async with self._pool.connection() as conn:
            async with conn.transaction(), conn.cursor(name="cmo_manifests") as cur:
                await cur.execute(MANIFESTS)
                async for (stored,) in cur:
                    found.update(manifest_digests(bytes(stored)))
            cur2 = await conn.execute(ARTIFACT_DIGESTS)
            found.update(row[0] for row in await cur2.fetchall())
        return found
