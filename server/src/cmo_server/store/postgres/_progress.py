"""Runs' current task rows on Postgres, for explaining where they are (`ProgressStore`)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from cmo_server.domain import Failure, Namespace
from cmo_server.progress import TaskSnapshot
from cmo_server.store.postgres._db import Pool

__all__ = ["PostgresProgress"]

# A waiting task's visible_at is 'infinity', which no datetime holds: read as NULL.
SELECT = """
    SELECT run_id, step_index, node_id, task_queue, graph_key, attempt, failures,
           CASE WHEN visible_at = 'infinity' THEN NULL ELSE visible_at END, lease_owner,
           last_failure, wait_kind, wait_name, wait_until, now()
      FROM tasks WHERE namespace = %(namespace)s AND run_id = ANY(%(run_ids)s)
"""


class PostgresProgress:
    """The `ProgressStore` part of `PostgresStore`."""

    _pool: Pool

    async def current_tasks(self, namespace: Namespace, run_ids: Sequence[str]) -> dict[str, TaskSnapshot]:
        """See `ProgressStore.current_tasks`."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(SELECT, {"namespace": str(namespace), "run_ids": list(run_ids)})
            rows = await cursor.fetchall()
        return {
            row[0]: TaskSnapshot(
                run_id=row[0],
                step_index=row[1],
                node_id=row[2],
                task_queue=row[3],
                graph_key=row[4],
                attempt=row[5],
                failures=row[6],
                visible_at=row[7],
                lease_owner=row[8],
                last_failure=None if row[9] is None else Failure.from_json(json.loads(row[9])),
                wait_kind=row[10],
                wait_name=row[11],
                wait_until=row[12],
                now=row[13],
            )
            for row in rows
        }
