"""Runs' current task rows on SQLite, for explaining where they are (`ProgressStore`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from cmo_server.domain import Failure, Namespace
from cmo_server.progress import TaskSnapshot
from cmo_server.store.sqlite._db import dt, now_us
from cmo_server.store.sqlite._waits import NEVER

__all__ = ["SqliteProgress"]

MAX_RUNS = 500
"""Run ids per statement (SQLite's variable limit is far above it)."""
SELECT = """
    SELECT run_id, step_index, node_id, task_queue, graph_key, attempt, failures, visible_at, lease_owner,
           last_failure, wait_kind, wait_name, wait_until
      FROM tasks WHERE namespace = ? AND run_id IN ({marks})
"""


def current_tasks(conn: sqlite3.Connection, namespace: Namespace, run_ids: Sequence[str]) -> dict[str, TaskSnapshot]:
    now = dt(now_us())
    found: dict[str, TaskSnapshot] = {}
    ids = list(dict.fromkeys(run_ids))
    for start in range(0, len(ids), MAX_RUNS):
        chunk = ids[start : start + MAX_RUNS]
        sql = SELECT.format(marks=", ".join("?" * len(chunk)))
        for row in conn.execute(sql, [str(namespace), *chunk]):
            found[row[0]] = TaskSnapshot(
                run_id=row[0],
                step_index=row[1],
                node_id=row[2],
                task_queue=row[3],
                graph_key=row[4],
                attempt=row[5],
                failures=row[6],
                visible_at=None if row[7] >= NEVER else dt(row[7]),
                lease_owner=row[8],
                last_failure=None if row[9] is None else Failure.from_json(json.loads(row[9])),
                wait_kind=row[10],
                wait_name=row[11],
                wait_until=None if row[12] is None else dt(row[12]),
                now=now,
            )
    return found


class SqliteProgress:
    """The `ProgressStore` part of `SqliteStore`."""

    _conn: sqlite3.Connection

    async def current_tasks(self, namespace: Namespace, run_ids: Sequence[str]) -> dict[str, TaskSnapshot]:
        """See `ProgressStore.current_tasks`."""
        return current_tasks(self._conn, namespace, run_ids)
