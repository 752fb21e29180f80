"""The graphs the benchmarks run. Imported by the bench client and by the worker process."""

from __future__ import annotations

import os
from typing import Any

import cmo

__all__ = [
    "BIG_STATE_STEPS",
    "CHAIN_STEPS",
    "GRAPHS",
    "HTTP_URL_VARIABLE",
    "big_state",
    "chain",
    "three_step",
    "three_step_activity",
    "three_step_http",
]

CHAIN_STEPS = 100
BIG_STATE_STEPS = 100
HTTP_URL_VARIABLE = "BENCH_HTTP_URL"
"""The local HTTP server W1H calls, set by run.py for the worker process."""

three_step: cmo.Graph[dict[str, Any]] = cmo.Graph("bench-three-step", version=1)
"""W1 and W2: begin -> compute -> finish; only `compute` does any work."""


@three_step.node(entry=True, edges={"next": "compute"})
async def begin(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
    return cmo.NodeResult({**state, "begun": True}, next="next")


@three_step.node(edges={"next": "finish"})
async def compute(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
    # A trivial computation (~10 µs), so the numbers are the orchestrator's overhead.
    total = sum(i * i for i in range(state.get("n", 100)))
    return cmo.NodeResult({**state, "total": total}, next="next")


@three_step.node
async def finish(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
    return cmo.NodeResult({**state, "done": True}, next=cmo.END)


three_step_activity: cmo.Graph[dict[str, Any]] = cmo.Graph("bench-three-step-activity", version=1)
"""W1A: the W1 graph with its computation in a recorded activity (one RecordActivity per run)."""


@cmo.activity(name="square_sum")
async def square_sum(n: int) -> int:
    return sum(i * i for i in range(n))


@three_step_activity.node(entry=True, edges={"next": "compute"})
async def begin_a(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
    return cmo.NodeResult({**state, "begun": True}, next="next")


@three_step_activity.node(name="compute", edges={"next": "finish"})
async def compute_a(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
    total = await ctx.activity(square_sum, state.get("n", 100))
    return cmo.NodeResult({**state, "total": total}, next="next")


@three_step_activity.node(name="finish")
async def finish_a(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
    return cmo.NodeResult({**state, "done": True}, next=cmo.END)


three_step_http: cmo.Graph[dict[str, Any]] = cmo.Graph("bench-three-step-http", version=1)
"""W1H: the W1 graph whose `compute` node makes a recorded HTTP request to a local server."""


@three_step_http.node(entry=True, edges={"next": "compute"})
async def begin_h(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
    return cmo.NodeResult({**state, "begun": True}, next="next")


@three_step_http.node(name="compute", edges={"next": "finish"})
async def compute_h(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
    response = await ctx.http("GET", f"{os.environ[HTTP_URL_VARIABLE]}/square-sum?n={state.get('n', 100)}")
    return cmo.NodeResult({**state, "total": response.json()["total"]}, next="next")


@three_step_http.node(name="finish")
async def finish_h(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
    return cmo.NodeResult({**state, "done": True}, next=cmo.END)


big_state: cmo.Graph[dict[str, Any]] = cmo.Graph("bench-big-state", version=1)
"""WB: one node that loops on itself; the state carries a large field it never changes."""


@big_state.node(name="step", entry=True, edges={"again": "step"})
async def big_step(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
    i = state["i"] + 1
    return cmo.NodeResult({**state, "i": i}, next="again" if i < state["steps"] else cmo.END)


chain: cmo.Graph[dict[str, Any]] = cmo.Graph("bench-chain", version=1)
"""W3: one node that loops on itself `steps` times; each pass is one durable step."""


@chain.node(entry=True, edges={"again": "step"})
async def step(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
    i = state["i"] + 1
    return cmo.NodeResult({**state, "i": i}, next="again" if i < state["steps"] else cmo.END)


GRAPHS: list[cmo.Graph[Any]] = [three_step, three_step_activity, three_step_http, big_state, chain]
