"""Retention on SQLite: prune ended runs, and tell which blobs are still referenced."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from cmo_server.blob import manifest_digests
from cmo_server.domain import RunStatus
from cmo_server.store._retention import MANIFEST_COLUMNS
from cmo_server.store.sqlite._db import Transaction

__all__ = ["prune_runs", "referenced_blobs"]

SELECT_DOOMED = """
    SELECT run_id FROM runs
     WHERE completed_at < ? AND status IN (SELECT value FROM json_each(?))
     ORDER BY completed_at LIMIT ?
"""
DELETES = [
    f"DELETE FROM {table} WHERE run_id IN (SELECT value FROM json_each(?))"
    for table in ("activities", "steps", "signals", "artifacts", "runs")
]
# A manifest starts with a NUL byte, which no JSON payload does.
MANIFESTS = " UNION ALL ".join(
    f"SELECT {column} FROM {table} WHERE substr({column}, 1, 1) = x'00'" for table, column in MANIFEST_COLUMNS
)
ARTIFACT_DIGESTS = "SELECT DISTINCT digest FROM artifacts"


def prune_runs(
    conn: sqlite3.Connection, ended_before: datetime, statuses: Sequence[RunStatus], limit: int, dry_run: bool
) -> int:
    """See `Store.prune_runs`."""
    params = (int(ended_before.timestamp() * 1_000_000), json.dumps([int(s) for s in statuses]), limit)
    with Transaction(conn):
        doomed = json.dumps([row[0] for row in conn.execute(SELECT_DOOMED, params)])
        count = len(json.loads(doomed))
        if not dry_run:
            for delete in DELETES:
                conn.execute(delete, (doomed,))
    return count


def referenced_blobs(conn: sqlite3.Connection) -> set[str]:
    """See `Store.referenced_blobs`."""
    found: set[str] = set()
    for (stored,) in conn.execute(MANIFESTS):
        found.update(manifest_digests(bytes(stored)))
    found.update(row[0] for row in conn.execute(ARTIFACT_DIGESTS))
    return found
