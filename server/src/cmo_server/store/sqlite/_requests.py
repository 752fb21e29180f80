"""Which run asked an agent what, on SQLite: lookups of the requests' activities."""

from __future__ import annotations

import sqlite3

from cmo.a2a.invoke import KIND_REQUEST, addressed_prefix, request_name
from cmo_server.domain import Namespace

__all__ = ["requests_awaiting", "run_of_request"]

SELECT_REQUESTING_RUN = """
    SELECT run_id FROM activities WHERE namespace = :namespace AND kind = :kind AND name = :name LIMIT 1
"""

# See the Postgres store's SELECT_AWAITING.
SELECT_AWAITING = """
    SELECT a.run_id, a.name FROM tasks t
      JOIN activities a ON a.namespace = t.namespace AND a.run_id = t.run_id AND a.step_index = t.step_index
     WHERE t.namespace = :namespace AND a.kind = :kind AND substr(a.result, 1, :length) = :prefix
"""


def run_of_request(conn: sqlite3.Connection, namespace: Namespace, message_id: str) -> str | None:
    """See `Store.run_of_request`."""
    params = {"namespace": str(namespace), "kind": KIND_REQUEST, "name": request_name(message_id)}
    row = conn.execute(SELECT_REQUESTING_RUN, params).fetchone()
    return None if row is None else str(row[0])


def requests_awaiting(conn: sqlite3.Connection, namespace: Namespace, agent_id: str) -> list[tuple[str, str]]:
    """See `Store.requests_awaiting`."""
    prefix = addressed_prefix(agent_id)
    params = {"namespace": str(namespace), "kind": KIND_REQUEST, "prefix": prefix, "length": len(prefix)}
    return [(str(run_id), str(name)) for run_id, name in conn.execute(SELECT_AWAITING, params).fetchall()]
