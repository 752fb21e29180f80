"""The graph registry on Postgres: versions stored once, immutable, read by namespace."""

from __future__ import annotations

import json

from cmo_server.domain import GraphSpec, Namespace
from cmo_server.errors import AlreadyExists
from cmo_server.store._pages import decode_graph_page_token, encode_graph_page_token
from cmo_server.store._protocol import GraphPage
from cmo_server.store.postgres._db import PooledStatements

__all__ = ["PostgresGraphs"]

INSERT_GRAPH = """
    INSERT INTO graphs (namespace, graph_id, version, definition, registered_at)
    VALUES (%(namespace)s, %(graph_id)s, %(version)s, %(definition)s, now())
    ON CONFLICT (namespace, graph_id, version) DO NOTHING
"""
SELECT_GRAPH_DEFINITION = """
    SELECT definition FROM graphs WHERE namespace = %(namespace)s AND graph_id = %(graph_id)s AND version = %(version)s
"""
SELECT_NEWEST_GRAPH = """
    SELECT definition FROM graphs WHERE namespace = %(namespace)s AND graph_id = %(graph_id)s
     ORDER BY version DESC LIMIT 1
"""
LIST_GRAPHS = """
    SELECT definition FROM graphs
     WHERE namespace = %(namespace)s AND (%(graph_id)s = '' OR graph_id = %(graph_id)s)
       AND (graph_id, version) > (%(after_id)s, %(after_version)s)
     ORDER BY graph_id, version LIMIT %(limit)s
"""


class PostgresGraphs(PooledStatements):
    """The graph-registry part of `PostgresStore`."""

    async def register_graph(self, graph: GraphSpec) -> bool:
        """See `Store.register_graph`."""
        params = {
            "namespace": str(graph.namespace),
            "graph_id": graph.graph_id,
            "version": graph.version,
            "definition": graph.definition_json().decode(),
        }
        if await self._rowcount(INSERT_GRAPH, params) == 1:
            return True
        # Versions are immutable once stored, so reading the existing one after the insert is safe.
        row = await self._fetchone(SELECT_GRAPH_DEFINITION, params)
        assert row is not None, "a graph version is never deleted"
        if row[0] != params["definition"]:
            raise AlreadyExists(graph.conflict_message(json.loads(row[0])))
        return False

    async def get_graph(self, namespace: Namespace, graph_id: str, version: int) -> GraphSpec | None:
        """See `Store.get_graph`."""
        params = {"namespace": str(namespace), "graph_id": graph_id, "version": version}
        row = await self._fetchone(SELECT_GRAPH_DEFINITION if version else SELECT_NEWEST_GRAPH, params)
        return None if row is None else GraphSpec.from_json(json.loads(row[0]), namespace)

    async def list_graphs(
        self, namespace: Namespace, *, graph_id: str = "", limit: int = 100, page_token: str = ""
    ) -> GraphPage:
        """See `Store.list_graphs`."""
        after_id, after_version = decode_graph_page_token(page_token) if page_token else ("", 0)
        params = {
            "namespace": str(namespace),
            "graph_id": graph_id,
            "after_id": after_id,
            "after_version": after_version,
            "limit": limit + 1,
        }
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(LIST_GRAPHS, params)).fetchall()
        graphs = [GraphSpec.from_json(json.loads(row[0]), namespace) for row in rows]
        last = graphs[limit - 1] if len(graphs) > limit else None
        return graphs[:limit], encode_graph_page_token(last.graph_id, last.version) if last else ""
