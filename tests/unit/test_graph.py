import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

import cmo
from cmo._convert import graph_to_proto
from cmo.errors import GraphError


def make_graph() -> cmo.Graph[dict[str, Any]]:
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph("g", version=2)

    @graph.node(entry=True, edges={"next": "second"}, retry=cmo.RetryPolicy(max_attempts=5), task_queue="q1")
    async def first(state, ctx):
        return cmo.NodeResult(state, next="next")

    @graph.node
    def second(state, ctx):
        return cmo.NodeResult({**state, "done": True})

    return graph


def test_graph_definition_goes_to_the_wire():
    msg = graph_to_proto(make_graph())
    assert (msg.graph_id, msg.version, msg.entry_node) == ("g", 2, "first")
    nodes = {n.node_id: n for n in msg.nodes}
    assert (nodes["first"].task_queue, nodes["first"].retry.max_attempts) == ("q1", 5)
    assert nodes["second"].task_queue == "default"
    assert [(e.from_node, e.key, e.to_node) for e in msg.edges] == [("first", "next", "second")]
    assert make_graph().task_queues == ["default", "q1"]


def test_invalid_graphs_are_refused_with_the_reason():
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph("g")
    with pytest.raises(GraphError, match="no nodes"):
        graph.validate()

    @graph.node(edges={"x": "missing"})
    async def a(state, ctx):
        return cmo.NodeResult(state)

    with pytest.raises(GraphError, match="no entry node"):
        graph.validate()
    graph.entry = "a"
    with pytest.raises(GraphError, match="unknown node 'missing'"):
        graph.validate()
    with pytest.raises(GraphError, match="already has a node"):
        graph.node(a)
    with pytest.raises(GraphError, match="version"):
        cmo.Graph("g", version=0)


def test_sync_and_async_nodes_run_and_are_checked():
    graph = make_graph()
    ctx = cmo.NodeContext(
        run_id="r",
        step_index=0,
        attempt=1,
        node_id="first",
        graph_id="g",
        graph_version=2,
        logical_time=datetime(2026, 1, 1, tzinfo=UTC),
        seed=7,
    )
    assert asyncio.run(graph.nodes["first"].run({"a": 1}, ctx)).next == "next"
    assert asyncio.run(graph.nodes["second"].run({}, ctx)).state == {"done": True}

    bad: cmo.Graph[dict[str, Any]] = cmo.Graph("bad")
    bad.node(name="oops", entry=True)(lambda state, ctx: state)
    with pytest.raises(TypeError, match="must return NodeResult"):
        asyncio.run(bad.nodes["oops"].run({}, ctx))


def test_context_time_and_randomness_are_deterministic_per_step():
    def ctx(step: int, attempt: int) -> cmo.NodeContext:
        return cmo.NodeContext(
            run_id="r",
            step_index=step,
            attempt=attempt,
            node_id="n",
            graph_id="g",
            graph_version=1,
            logical_time=datetime(2026, 1, 1, tzinfo=UTC),
            seed=42,
        )

    first, retry, other_step = ctx(3, 1), ctx(3, 2), ctx(4, 1)
    draws = [first.random() for _ in range(3)]
    assert draws == [retry.random() for _ in range(3)]
    assert draws != [other_step.random() for _ in range(3)]
    assert first.now() == retry.now() == datetime(2026, 1, 1, tzinfo=UTC)


def test_retry_policy_validates():
    with pytest.raises(ValueError, match="backoff"):
        cmo.RetryPolicy(backoff=0.5)
    with pytest.raises(ValueError, match="max_attempts"):
        cmo.RetryPolicy(max_attempts=-1)


def test_a_function_can_be_added_with_options_without_the_decorator_form():
    graph: cmo.Graph[dict[str, int]] = cmo.Graph("direct")

    async def start(state: dict[str, int], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, int]]:
        return cmo.NodeResult(state, next=cmo.END)

    # make typecheck checks this call form against Graph.node's overloads too.
    assert graph.node(start, name="begin", entry=True) is start
    assert graph.entry == "begin"
