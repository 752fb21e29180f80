"""Which run asked an agent what, on SQLite: a lookup of the request's activity."""

from __future__ import annotations

import sqlite3

from cmo.a2a.invoke import KIND_REQUEST, request_name
from cmo_server.domain import Namespace

__all__ = ["run_of_request"]

SELECT_REQUESTING_RUN = """
    SELECT run_id FROM activities WHERE namespace = :namespace AND kind = :kind AND name = :name LIMIT 1
"""


def run_of_request(conn: sqlite3.Connection, namespace: Namespace, message_id: str) -> str | None:
    """See `Store.run_of_request`."""
    params = {"namespace": str(namespace), "kind": KIND_REQUEST, "name": request_name(message_id)}
    row = conn.execute(SELECT_REQUESTING_RUN, params).fetchone()
    return None if row is None else str(row[0])
