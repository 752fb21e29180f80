"""The graph registry: immutable versions, idempotent registration."""

from __future__ import annotations

from dataclasses import replace
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

    with pytest.raises(AlreadyExists) as refused:
        await store.register_graph(changed)

    assert await store.get_graph(graph.graph_id, graph.version) == graph
    assert "graph.edges[1]" in str(refused.value)  # says which field differs


async def test_the_conflict_names_the_field_that_differs(store: Store) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))
    await store.register_graph(graph)
    retry = RetrySpec(max_attempts=7)
    changed = replace(graph, nodes={**graph.nodes, "b": replace(graph.nodes["b"], retry=retry)})

    with pytest.raises(AlreadyExists) as refused:
        await store.register_graph(changed)

    assert "graph.nodes['b'].retry.max_attempts is 3 in the registered version, 7 in this one" in str(refused.value)


async def test_list_graphs_pages_through_every_version_in_order(store: Store) -> None:
    queue = unique("q")
    first, second = unique("g"), unique("g")
    graphs = [chain_graph("a", queue=queue, graph_id=g, version=v) for g in (second, first) for v in (2, 1, 3)]
    for graph in graphs:
        await store.register_graph(graph)

    only_first, token = await store.list_graphs(graph_id=first)
    assert [(g.graph_id, g.version) for g in only_first] == [(first, 1), (first, 2), (first, 3)]
    assert token == ""
    seen: list[tuple[str, int]] = []
    token = ""
    while True:
        page, token = await store.list_graphs(limit=2, page_token=token)
        seen += [(g.graph_id, g.version) for g in page if g.graph_id in (first, second)]
        if not token:
            break
    assert seen == sorted((g, v) for g in (first, second) for v in (1, 2, 3))
    assert (await store.list_graphs(graph_id=first, limit=3))[0][-1] == graphs[5]


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
