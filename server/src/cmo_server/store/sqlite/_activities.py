"""The activity log on SQLite: fenced records, the first of a (step, seq) kept but for older failures."""

from __future__ import annotations

import sqlite3

from cmo_server.domain import ActivityRecord, TaskKey
from cmo_server.errors import StaleLease
from cmo_server.store._rows import ACTIVITY_COLUMNS, activity_from_row
from cmo_server.store.sqlite._db import FENCE, INSERT_ACTIVITY, Transaction, activity_row, dt, fence, now_us

__all__ = ["record_activity"]

SELECT_FENCED_TASK = f"SELECT 1 FROM tasks WHERE {FENCE}"
SELECT_ACTIVITY = f"""
    SELECT {ACTIVITY_COLUMNS} FROM activities
     WHERE namespace = :namespace AND run_id = :run_id AND step_index = :step_index AND seq = :seq
"""


def record_activity(conn: sqlite3.Connection, key: TaskKey, activity: ActivityRecord) -> ActivityRecord:
    """See `Store.record_activity`."""
    params = {**activity_row(key, activity), "now": now_us()}
    with Transaction(conn):
        if conn.execute(SELECT_FENCED_TASK, fence(key)).fetchone() is None:
            raise StaleLease(key.run_id, key.step_index, key.attempt)
        conn.execute(INSERT_ACTIVITY, params)
        row = conn.execute(SELECT_ACTIVITY, params).fetchone()
    return activity_from_row(row, dt)
