"""The graph registry on SQLite: versions stored once, immutable, read by namespace."""

from __future__ import annotations

import json
import sqlite3

from cmo_server.domain import GraphSpec, Namespace
from cmo_server.errors import AlreadyExists
from cmo_server.store._pages import encode_graph_page_token
from cmo_server.store._protocol import GraphPage
from cmo_server.store.sqlite._db import Transaction, now_us

__all__ = ["get_graph", "list_graphs", "register_graph"]

# Every statement names the namespace: a resource of another one is not there.
SELECT_GRAPH_DEFINITION = """
    SELECT definition FROM graphs WHERE namespace = :namespace AND graph_id = :graph_id AND version = :version
"""
INSERT_GRAPH = """
    INSERT INTO graphs (namespace, graph_id, version, definition, registered_at)
    VALUES (:namespace, :graph_id, :version, :definition, :now)
"""
SELECT_NEWEST_GRAPH = """
    SELECT definition FROM graphs WHERE namespace = :namespace AND graph_id = :graph_id ORDER BY version DESC LIMIT 1
"""
LIST_GRAPHS = """
    SELECT definition FROM graphs
     WHERE namespace = :namespace AND (:graph_id = '' OR graph_id = :graph_id)
       AND (graph_id, version) > (:after_id, :after_version)
     ORDER BY graph_id, version LIMIT :limit
"""


def register_graph(conn: sqlite3.Connection, graph: GraphSpec) -> bool:
    """See `Store.register_graph`."""
    params = {
        "namespace": str(graph.namespace),
        "graph_id": graph.graph_id,
        "version": graph.version,
        "definition": graph.definition_json().decode(),
        "now": now_us(),
    }
    with Transaction(conn):
        row = conn.execute(SELECT_GRAPH_DEFINITION, params).fetchone()
        if row is not None:
            if row[0] != params["definition"]:
                raise AlreadyExists(graph.conflict_message(json.loads(row[0])))
            return False
        conn.execute(INSERT_GRAPH, params)
        return True


def get_graph(conn: sqlite3.Connection, namespace: Namespace, graph_id: str, version: int) -> GraphSpec | None:
    """See `Store.get_graph`."""
    params = {"namespace": str(namespace), "graph_id": graph_id, "version": version}
    row = conn.execute(SELECT_GRAPH_DEFINITION if version else SELECT_NEWEST_GRAPH, params).fetchone()
    return None if row is None else GraphSpec.from_json(json.loads(row[0]), namespace)


def list_graphs(
    conn: sqlite3.Connection, namespace: Namespace, graph_id: str, limit: int, after: tuple[str, int]
) -> GraphPage:
    """See `Store.list_graphs`."""
    params = {
        "namespace": str(namespace),
        "graph_id": graph_id,
        "after_id": after[0],
        "after_version": after[1],
        "limit": limit + 1,
    }
    graphs = [GraphSpec.from_json(json.loads(row[0]), namespace) for row in conn.execute(LIST_GRAPHS, params)]
    last = graphs[limit - 1] if len(graphs) > limit else None
    return graphs[:limit], encode_graph_page_token(last.graph_id, last.version) if last else ""
