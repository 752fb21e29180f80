"""The activity log on Postgres: fenced records, the first of a (step, seq) kept but for older failures."""

from __future__ import annotations

from cmo_server.domain import ActivityRecord, TaskKey
from cmo_server.errors import StaleLease
from cmo_server.store._rows import ACTIVITY_COLUMNS, ON_RECORD_CONFLICT, activity_from_row, activity_params
from cmo_server.store.postgres._db import FENCE, Pool, fence, same

__all__ = ["PostgresActivities"]

# FOR SHARE holds off a claim that would bump the attempt until this record is committed, so a
# record is never written for an attempt that has already lost the task.
LOCK_FENCED_TASK = f"SELECT 1 FROM tasks WHERE {FENCE} FOR SHARE"
INSERT_ACTIVITY = f"""
    INSERT INTO activities (namespace, run_id, step_index, seq, kind, name, request_hash, result, error, attempt,
                            recorded_at)
    VALUES (%(namespace)s, %(run_id)s, %(step_index)s, %(seq)s, %(kind)s, %(name)s, %(request_hash)s, %(result)s,
            %(error)s, %(attempt)s, now())
    {ON_RECORD_CONFLICT}
"""
SELECT_ACTIVITY = f"""
    SELECT {ACTIVITY_COLUMNS} FROM activities
     WHERE namespace = %(namespace)s AND run_id = %(run_id)s AND step_index = %(step_index)s AND seq = %(seq)s
"""


class PostgresActivities:
    """The activity-log part of `PostgresStore`."""

    _pool: Pool

    async def record_activity(self, key: TaskKey, activity: ActivityRecord) -> ActivityRecord:
        """See `Store.record_activity`."""
        params = activity_params(key.namespace, key.run_id, key.step_index, activity)
        async with self._pool.connection() as conn, conn.transaction():
            if await (await conn.execute(LOCK_FENCED_TASK, fence(key))).fetchone() is None:
                raise StaleLease(key.run_id, key.step_index, key.attempt)
            await conn.execute(INSERT_ACTIVITY, params)
            row = await (await conn.execute(SELECT_ACTIVITY, params)).fetchone()
        assert row is not None
        return activity_from_row(row, same)
