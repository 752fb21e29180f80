"""Runs' current task rows on Postgres, for explaining where they are (`ProgressStore`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cmo_server.domain import Namespace
from cmo_server.progress import TaskSnapshot
from cmo_server.store._rows import TASK_SNAPSHOT_COLUMNS, task_snapshot_from_row
from cmo_server.store.postgres._db import Pool

__all__ = ["PostgresProgress"]

# A waiting task's visible_at is 'infinity', which no datetime holds: read as NULL.
_VISIBLE_AT = "CASE WHEN visible_at = 'infinity' THEN NULL ELSE visible_at END"
SELECT = f"""
    SELECT {TASK_SNAPSHOT_COLUMNS.replace("visible_at", _VISIBLE_AT)}, now()
      FROM tasks WHERE namespace = %(namespace)s AND run_id = ANY(%(run_ids)s)
"""


def _time(value: datetime | None) -> datetime | None:
    return value


class PostgresProgress:
    """The `ProgressStore` part of `PostgresStore`."""

    _pool: Pool

    async def current_tasks(self, namespace: Namespace, run_ids: Sequence[str]) -> dict[str, TaskSnapshot]:
        """See `ProgressStore.current_tasks`."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(SELECT, {"namespace": str(namespace), "run_ids": list(run_ids)})
            rows = await cursor.fetchall()
        return {row[0]: task_snapshot_from_row(row, _time, row[13]) for row in rows}
