"""The graph end-to-end workers run, and the marker files its node leaves for the test to act on.

The `counter` graph has one node, `tick`, that loops on itself `steps` times. Each step adds one to
`count` and appends its step index to `trail`, so a checkpoint proves it was built on exactly the
one before it: a step that ran twice into the history would show in both.

Each attempt of a step leaves marker files named `<run_id>.<step>.<attempt>.<kind>`:

- `started`: written first, with the worker's id and pid: the test knows who runs what, and when.
- `finished`: written just before the node returns.
- a node told to `hold` at (step, attempt) then waits until the test creates the `release` file
  (or `timeout` seconds pass) so the test can kill, stop or race that worker mid-step. A
  `stubborn` hold ignores cancellation: a node that will not stop when its lease is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import cmo

__all__ = [
    "APPROVAL",
    "COUNTER",
    "GRAPHS",
    "ORDERS",
    "Markers",
    "approval_graph",
    "check_counter_history",
    "counter_graph",
    "counter_input",
    "orders_graph",
    "sink_effects",
]

COUNTER = "e2e-counter"
"""graph_id of the counter graph (version 1)."""

State = dict[str, Any]


class Markers:
    """The marker files of one test: written by node code in workers, read by the test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, run_id: str, step: int, attempt: int, kind: str) -> Path:
        """Where the marker of this kind for this attempt lives."""
        return self.root / f"{run_id}.{step}.{attempt}.{kind}"

    def write(self, run_id: str, step: int, attempt: int, kind: str, data: dict[str, Any]) -> None:
        """Write a marker atomically: a reader never sees half of it."""
        final = self.path(run_id, step, attempt, kind)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, final)

    def read(self, run_id: str, step: int, attempt: int, kind: str) -> dict[str, Any] | None:
        """A marker's data, or None if it is not there (yet)."""
        try:
            return dict(json.loads(self.path(run_id, step, attempt, kind).read_text()))
        except FileNotFoundError:
            return None

    def release(self, run_id: str, step: int, attempt: int) -> None:
        """Let a node held at this attempt go on."""
        self.path(run_id, step, attempt, "release").touch()

    def released(self, run_id: str, step: int, attempt: int) -> bool:
        """Whether the test let this attempt go on."""
        return self.path(run_id, step, attempt, "release").exists()

    def all(self, kind: str) -> list[dict[str, Any]]:
        """Every marker of a kind, in no particular order."""
        return [json.loads(p.read_text()) for p in self.root.glob(f"*.{kind}")]

    def count(self, kind: str) -> int:
        """How many markers of a kind there are."""
        return sum(1 for _ in self.root.glob(f"*.{kind}"))


def counter_input(
    steps: int, *, sleep: float = 0.0, hold: Iterable[tuple[int, int]] = (), stubborn: bool = False
) -> State:
    """Initial state of a counter run.

    Args:
        steps: Steps the run takes before it ends.
        sleep: Seconds each step sleeps (to keep runs in flight under load).
        hold: (step_index, attempt) pairs at which the node waits for its `release` marker.
        stubborn: A held node ignores cancellation (a lost lease) and finishes anyway.
    """
    return {
        "count": 0,
        "trail": [],
        "steps": steps,
        "sleep": sleep,
        "hold": [{"step": s, "attempt": a, "stubborn": stubborn, "timeout": 60.0} for s, a in hold],
    }


def counter_graph(markers: Markers, worker_id: str) -> cmo.Graph[State]:
    """The counter graph, its node leaving markers under `markers` in the name of `worker_id`."""
    graph: cmo.Graph[State] = cmo.Graph(COUNTER, version=1)

    @graph.node(entry=True, edges={"again": "tick"})
    async def tick(state: State, ctx: cmo.NodeContext) -> cmo.NodeResult[State]:
        me = {"run_id": ctx.run_id, "step": ctx.step_index, "attempt": ctx.attempt}
        me |= {"worker_id": worker_id, "pid": os.getpid()}
        markers.write(ctx.run_id, ctx.step_index, ctx.attempt, "started", me)
        hold = next((h for h in state["hold"] if (h["step"], h["attempt"]) == (ctx.step_index, ctx.attempt)), None)
        if hold is not None:
            await _hold(markers, ctx, hold)
        elif state["sleep"]:
            await asyncio.sleep(state["sleep"])
        count = state["count"] + 1
        new = {**state, "count": count, "trail": [*state["trail"], ctx.step_index]}
        markers.write(ctx.run_id, ctx.step_index, ctx.attempt, "finished", me)
        return cmo.NodeResult(new, next="again" if count < state["steps"] else cmo.END)

    return graph


async def _hold(markers: Markers, ctx: cmo.NodeContext, hold: dict[str, Any]) -> None:
    deadline = time.monotonic() + hold["timeout"]
    while not markers.released(ctx.run_id, ctx.step_index, ctx.attempt) and time.monotonic() < deadline:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if not hold["stubborn"]:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            me = {"run_id": ctx.run_id, "step": ctx.step_index, "attempt": ctx.attempt}
            markers.write(ctx.run_id, ctx.step_index, ctx.attempt, "cancelled", me)


def check_counter_history(steps: Sequence[cmo.StepInfo], total: int) -> None:
    """Assert a finished counter run's history: steps 0..total-1, each exactly once, in order."""
    assert [s.step_index for s in steps] == list(range(total)), "steps are not contiguous from 0"
    for s in steps:
        assert s.node_id == "tick"
        assert s.state["count"] == s.step_index + 1, f"step {s.step_index} counted {s.state['count']}"
        assert s.state["trail"] == list(range(s.step_index + 1)), f"step {s.step_index}: {s.state['trail']}"
        assert s.next_node == (cmo.END if s.step_index == total - 1 else "tick")


ORDERS = "e2e-orders"
"""graph_id of the orders graph (version 1)."""


def sink_effects(markers: Markers) -> dict[tuple[str, str], int]:
    """How many times each activity ran its side effect, by (name, idempotency key)."""
    with contextlib.closing(sqlite3.connect(markers.root / "sink.db")) as db:
        return {(name, key): runs for key, name, runs in db.execute("SELECT key, name, runs FROM effects")}


def _side_effect(markers: Markers, name: str) -> str:
    """The real side effect: a row per idempotency key in an SQLite file, counting executions."""
    key = cmo.activity_info().idempotency_key
    with contextlib.closing(sqlite3.connect(markers.root / "sink.db", timeout=10)) as db, db:
        db.execute("CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, name TEXT NOT NULL, runs INTEGER)")
        db.execute("INSERT INTO effects VALUES (?, ?, 1) ON CONFLICT (key) DO UPDATE SET runs = runs + 1", (key, name))
    return key


def orders_graph(markers: Markers, worker_id: str) -> cmo.Graph[State]:
    """One node, `fulfil`, that charges then ships through activities with a real side effect each.

    `hold` in the state stops the first attempt at one point so the test can kill the worker there:
    "after_effect" inside `ship`, after its side effect and before it is recorded; "after_record"
    in a third activity, `pause`, after `ship` was recorded and before the step's checkpoint.
    """
    graph: cmo.Graph[State] = cmo.Graph(ORDERS, version=1)

    @cmo.activity(name="charge")
    async def charge(order: str) -> str:
        return _side_effect(markers, "charge")

    @cmo.activity(name="ship")
    async def ship(order: str, hold: str) -> str:
        key = _side_effect(markers, "ship")
        info = cmo.activity_info()
        if hold == "after_effect" and markers.read(info.run_id, info.step_index, 1, "effect") is None:
            markers.write(info.run_id, info.step_index, 1, "effect", {"pid": os.getpid()})
            await asyncio.sleep(60)  # killed here
        return key

    @cmo.activity(name="pause")
    async def pause() -> None:
        # The worker confirms every earlier record durable before an activity starts, so `ship` is
        # recorded by now. Node code right after `ship` would not do: its record may still be on
        # the way, and a kill there loses it (and ship runs again, as it may).
        info = cmo.activity_info()
        if markers.read(info.run_id, info.step_index, 1, "recorded") is None:
            markers.write(info.run_id, info.step_index, 1, "recorded", {"pid": os.getpid()})
            await asyncio.sleep(60)  # killed here

    @graph.node(entry=True)
    async def fulfil(state: State, ctx: cmo.NodeContext) -> cmo.NodeResult[State]:
        charged = await ctx.activity(charge, state["order"])
        shipped = await ctx.activity(ship, state["order"], state["hold"])
        if state["hold"] == "after_record":
            await ctx.activity(pause)
        return cmo.NodeResult({**state, "charged": charged, "shipped": shipped, "by": worker_id})

    return graph


APPROVAL = "e2e-approval"
"""graph_id of the approval graph (version 1)."""


def approval_graph(markers: Markers, worker_id: str) -> cmo.Graph[State]:
    """One node, `gate`, that waits for the signal "approve" if `signal` is set in the state, then
    sleeps `nap` seconds on a durable timer; each attempt leaves a `started` marker."""
    graph: cmo.Graph[State] = cmo.Graph(APPROVAL, version=1)

    @graph.node(entry=True)
    async def gate(state: State, ctx: cmo.NodeContext) -> cmo.NodeResult[State]:
        markers.write(ctx.run_id, ctx.step_index, ctx.attempt, "started", {"worker_id": worker_id})
        decision = await ctx.wait_for_signal("approve") if state.get("signal") else None
        if state.get("nap"):
            await ctx.sleep(state["nap"])
        return cmo.NodeResult({**state, "decision": decision, "by": worker_id}, next=cmo.END)

    return graph


INVOKER = "e2e-invoker"
"""graph_id of the invoker graph (version 1): one step asking the healer specialist."""


def invoker_graph(markers: Markers, worker_id: str) -> cmo.Graph[State]:
    """One node, `ask`, that invokes the `healer` specialist and keeps its proposal."""
    graph: cmo.Graph[State] = cmo.Graph(INVOKER, version=1)

    @graph.node(entry=True)
    async def ask(state: State, ctx: cmo.NodeContext) -> cmo.NodeResult[State]:
        markers.write(ctx.run_id, ctx.step_index, ctx.attempt, "started", {"pid": os.getpid(), "worker_id": worker_id})
        result = await ctx.invoke_specialist("healer", task="heal", inputs={"selector": state["selector"]})
        return cmo.NodeResult({**state, "proposal": result.proposal})

    return graph


CAPABILITY_INVOKER = "e2e-capability-invoker"
"""graph_id of the graph (version 1) whose one step asks whichever agent can do healing.selector."""


def capability_invoker_graph(markers: Markers, worker_id: str) -> cmo.Graph[State]:
    """One node, `ask`, that invokes an agent found by capability and keeps its proposal."""
    graph: cmo.Graph[State] = cmo.Graph(CAPABILITY_INVOKER, version=1)

    @graph.node(entry=True)
    async def ask(state: State, ctx: cmo.NodeContext) -> cmo.NodeResult[State]:
        markers.write(ctx.run_id, ctx.step_index, ctx.attempt, "started", {"pid": os.getpid(), "worker_id": worker_id})
        result = await ctx.invoke_specialist(
            capability="healing.selector", task="heal", inputs={"selector": state["selector"]}
        )
        return cmo.NodeResult({**state, "proposal": result.proposal})

    return graph


GRAPHS: dict[str, Callable[[Markers, str], cmo.Graph[State]]] = {
    "approval": approval_graph,
    "invoker": invoker_graph,
    "capability-invoker": capability_invoker_graph,
    "counter": counter_graph,
    "orders": orders_graph,
}
"""Graphs a worker process can serve, by the name `--graph` takes."""
