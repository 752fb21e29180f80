"""The graph registry: immutable versions, idempotent registration."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cmo_server.domain import GraphSpec, NodeSpec, RetrySpec
from cmo_server.errors import AlreadyExists
from cmo_server.store import Store
from tests.integration.contract.helpers import chain_graph, unique


async def test_registering_a_graph_twice_is_idempotent(store: Store) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))

    assert await store.register_graph(graph) is True
    assert await store.register_graph(graph) is False
    assert await store.get_graph(graph.graph_id, graph.version) == graph


async def test_a_version_with_another_definition_is_refused(store: Store) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))
    await store.register_graph(graph)
    changed = chain_graph("a", "b", "c", queue=graph.nodes["a"].task_queue, graph_id=graph.graph_id)

    with pytest.raises(AlreadyExists):
        await store.register_graph(changed)

    assert await store.get_graph(graph.graph_id, graph.version) == graph


async def test_the_definition_round_trips(store: Store) -> None:
    retry = RetrySpec(
        max_attempts=7,
        initial_interval=timedelta(milliseconds=250),
        backoff=1.5,
        max_interval=timedelta(seconds=20),
        non_retryable_errors=("ValueError", "KeyError"),
    )
    graph = GraphSpec(
        graph_id=unique("graph"),
        version=3,
        entry_node="start",
        nodes={"start": NodeSpec("start", "q1", retry), "finish": NodeSpec("finish", "q2")},
        edges={("start", "ok"): "finish", ("start", "again"): "start"},
    )
    await store.register_graph(graph)

    assert await store.get_graph(graph.graph_id, 3) == graph


async def test_version_zero_is_the_newest(store: Store) -> None:
    queue = unique("q")
    graph_id = unique("graph")
    v2 = chain_graph("a", "b", queue=queue, graph_id=graph_id, version=2)
    v10 = chain_graph("a", "b", "c", queue=queue, graph_id=graph_id, version=10)
    v1 = chain_graph("x", queue=queue, graph_id=graph_id, version=1)
    for graph in (v2, v10, v1):
        await store.register_graph(graph)

    assert await store.get_graph(graph_id, 0) == v10
    assert await store.get_graph(graph_id, 2) == v2
    assert await store.get_graph(graph_id, 1) == v1


async def test_an_unknown_graph_is_none(store: Store) -> None:
    graph = chain_graph("a", queue=unique("q"))
    await store.register_graph(graph)

    assert await store.get_graph(graph.graph_id, 2) is None
    assert await store.get_graph(unique("graph"), 0) is None
    assert await store.get_graph(unique("graph"), 1) is None
