"""Counts for the metrics endpoint on SQLite: ready tasks by queue, runs by status.

Both are read on a metrics scrape (cached a few seconds by the caller), never on the hot path.
"""

from __future__ import annotations

import sqlite3

from cmo_server.domain import Namespace, RunStatus
from cmo_server.store.sqlite._db import now_us

__all__ = ["count_runs_by_graph", "count_runs_by_status", "queue_depths"]

# One row per unfinished run in tasks: bounded by the active runs, read through tasks_ready.
COUNT_READY_TASKS = """
    SELECT namespace, task_queue, count(*) FROM tasks WHERE visible_at <= ? GROUP BY namespace, task_queue
"""
# No index on status (it would be rewritten on every status change): a full scan of runs, which
# SQLite does at some millions of rows a second. It runs on the event loop like every SQLite call,
# so a dev database of a million runs blocks the loop for a fraction of a second per scrape; the
# caller caches the answer for a few seconds.
COUNT_RUNS_BY_STATUS = "SELECT namespace, status, count(*) FROM runs GROUP BY namespace, status"
# The namespace's runs through runs_newest_by_graph_status (namespace, graph_id, status, ...), each
# row read for its version.
COUNT_RUNS_BY_GRAPH = """
    SELECT graph_id, graph_version, status, count(*) FROM runs WHERE namespace = ?
    GROUP BY graph_id, graph_version, status
"""


def queue_depths(conn: sqlite3.Connection) -> dict[tuple[Namespace, str], int]:
    """Ready tasks (visible now: new, backed off, released or with a lapsed lease) by namespace and queue."""
    rows = conn.execute(COUNT_READY_TASKS, (now_us(),))
    return {(Namespace.parse(ns), queue): count for ns, queue, count in rows}


def count_runs_by_status(conn: sqlite3.Connection) -> dict[tuple[Namespace, RunStatus], int]:
    """Runs by namespace and status."""
    rows = conn.execute(COUNT_RUNS_BY_STATUS)
    return {(Namespace.parse(ns), RunStatus(status)): count for ns, status, count in rows}


def count_runs_by_graph(conn: sqlite3.Connection, namespace: Namespace) -> dict[tuple[str, int, RunStatus], int]:
    """A namespace's runs by graph id, version and status."""
    rows = conn.execute(COUNT_RUNS_BY_GRAPH, (str(namespace),))
    return {(graph_id, version, RunStatus(status)): count for graph_id, version, status, count in rows}
