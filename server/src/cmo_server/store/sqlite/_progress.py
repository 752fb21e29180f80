"""Runs' current task rows on SQLite, for explaining where they are (`ProgressStore`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from cmo_server.domain import Namespace
from cmo_server.progress import TaskSnapshot
from cmo_server.store._rows import TASK_SNAPSHOT_COLUMNS, task_snapshot_from_row
from cmo_server.store.sqlite._db import dt, now_us
from cmo_server.store.sqlite._waits import NEVER

__all__ = ["SqliteProgress"]

MAX_RUNS = 500
"""Run ids per statement (SQLite's variable limit is far above it)."""
SELECT = f"SELECT {TASK_SNAPSHOT_COLUMNS} FROM tasks WHERE namespace = ? AND run_id IN ({{marks}})"


def _time(us: int | None) -> datetime | None:
    return None if us is None or us >= NEVER else dt(us)  # a waiting task is visible at NEVER


def current_tasks(conn: sqlite3.Connection, namespace: Namespace, run_ids: Sequence[str]) -> dict[str, TaskSnapshot]:
    now = dt(now_us())
    found: dict[str, TaskSnapshot] = {}
    ids = list(dict.fromkeys(run_ids))
    for start in range(0, len(ids), MAX_RUNS):
        chunk = ids[start : start + MAX_RUNS]
        for row in conn.execute(SELECT.format(marks=", ".join("?" * len(chunk))), [str(namespace), *chunk]):
            found[row[0]] = task_snapshot_from_row(row, _time, now)
    return found


class SqliteProgress:
    """The `ProgressStore` part of `SqliteStore`."""

    _conn: sqlite3.Connection

    async def current_tasks(self, namespace: Namespace, run_ids: Sequence[str]) -> dict[str, TaskSnapshot]:
        """See `ProgressStore.current_tasks`."""
        return current_tasks(self._conn, namespace, run_ids)
