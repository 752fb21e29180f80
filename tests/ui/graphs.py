"""The demo graphs the browser tests drive: one that looks something up, waits for a signal and ends."""

from __future__ import annotations

from typing import Any

import cmo

State = dict[str, Any]


@cmo.activity(name="lookup")
async def lookup(ticket: str) -> dict[str, Any]:
    """A recorded side effect (its answer shows on the step's page)."""
    return {"ticket": ticket, "customer": "ACME", "notes": ["first", "second"]}


def approval_graph(graph_id: str = "ui-demo") -> cmo.Graph[State]:
    """plan (an activity) -> approve (waits for the signal `approval`) -> finish."""
    graph: cmo.Graph[State] = cmo.Graph(graph_id)

    @graph.node(entry=True, edges={"ask": "approve"})
    async def plan(state: State, ctx: cmo.NodeContext) -> cmo.NodeResult[State]:
        found = await ctx.activity(lookup, str(state.get("ticket", "t-1")))
        return cmo.NodeResult({**state, "planned": True, "lookup": found}, next="ask")

    @graph.node(edges={"approved": "finish", "rejected": cmo.END})
    async def approve(state: State, ctx: cmo.NodeContext) -> cmo.NodeResult[State]:
        decision = await ctx.wait_for_signal("approval")
        approved = isinstance(decision, dict) and bool(decision.get("ok"))
        return cmo.NodeResult({**state, "decision": decision}, next="approved" if approved else "rejected")

    @graph.node(edges={"done": cmo.END})
    async def finish(state: State, ctx: cmo.NodeContext) -> cmo.NodeResult[State]:
        return cmo.NodeResult({**state, "done": True}, next="done")

    return graph


def counting_graph(graph_id: str = "ui-count") -> cmo.Graph[State]:
    """One node that loops until `n` reaches `to`: a run of `to` steps."""
    graph: cmo.Graph[State] = cmo.Graph(graph_id)

    @graph.node(entry=True, edges={"again": "count", "done": cmo.END})
    async def count(state: State, ctx: cmo.NodeContext) -> cmo.NodeResult[State]:
        n = int(state.get("n", 0)) + 1
        return cmo.NodeResult({**state, "n": n}, next="done" if n >= int(state.get("to", 3)) else "again")

    return graph
