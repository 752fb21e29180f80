"""Retention on SQLite: prune ended runs, and tell which blobs are still referenced."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from cmo_server.blob import manifest_digests
from cmo_server.domain import Namespace, RunStatus
from cmo_server.store._retention import MANIFEST_COLUMNS
from cmo_server.store.sqlite._db import Transaction

__all__ = ["prune_runs", "referenced_blobs"]

SELECT_DOOMED = """
    SELECT namespace, run_id FROM runs
     WHERE completed_at < :before AND status IN (SELECT value FROM json_each(:statuses))
       AND (:namespace IS NULL OR namespace = :namespace)
     ORDER BY completed_at LIMIT :limit
"""
COUNT_DOOMED = """
    SELECT count(*) FROM runs
     WHERE completed_at < :before AND status IN (SELECT value FROM json_each(:statuses))
       AND (:namespace IS NULL OR namespace = :namespace)
"""
# `doomed` is a JSON array of [namespace, run_id] pairs.
DELETES = [
    f"""DELETE FROM {table} WHERE (namespace, run_id) IN
        (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:doomed))"""
    for table in ("activities", "steps", "signals", "artifacts", "runs")
]
# A manifest starts with a NUL byte, which no JSON payload does.
MANIFESTS = " UNION ALL ".join(
    f"SELECT {column} FROM {table} WHERE substr({column}, 1, 1) = x'00'" for table, column in MANIFEST_COLUMNS
)
ARTIFACT_DIGESTS = "SELECT DISTINCT digest FROM artifacts"


def prune_runs(
    conn: sqlite3.Connection,
    ended_before: datetime,
    statuses: Sequence[RunStatus],
    limit: int,
    namespace: Namespace | None,
    dry_run: bool,
) -> int:
    """See `Store.prune_runs`."""
    params = {
        "before": int(ended_before.timestamp() * 1_000_000),
        "statuses": json.dumps([int(s) for s in statuses]),
        "limit": limit,
        "namespace": None if namespace is None else str(namespace),
    }
    if dry_run:
        (count,) = conn.execute(COUNT_DOOMED, params).fetchone()
        return min(int(count), limit)
    with Transaction(conn):
        doomed = [list(row) for row in conn.execute(SELECT_DOOMED, params)]
        for delete in DELETES:
            conn.execute(delete, {"doomed": json.dumps(doomed)})
    return len(doomed)


def referenced_blobs(conn: sqlite3.Connection) -> set[str]:
    """See `Store.referenced_blobs`."""
    found: set[str] = set()
    for (stored,) in conn.execute(MANIFESTS):
        found.update(manifest_digests(bytes(stored)))
    found.update(row[0] for row in conn.execute(ARTIFACT_DIGESTS))
    return found
