"""Builders shared by the Store contract tests."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta

from cmo_server.domain import (
    END_NODE,
    AttemptEnd,
    Checkpoint,
    FailDecision,
    Failure,
    GraphSpec,
    NewRun,
    NodeSpec,
    Task,
    TaskKey,
)
from cmo_server.store import Store

LONG_LEASE = timedelta(seconds=30)
SHORT_LEASE = timedelta(milliseconds=50)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def chain_graph(*node_ids: str, queue: str, graph_id: str = "", version: int = 1) -> GraphSpec:
    """A graph whose nodes run one after the other (edge key "next"); the last one ends the run."""
    nodes = {n: NodeSpec(n, task_queue=queue) for n in node_ids}
    edges = {(a, "next"): b for a, b in itertools.pairwise(node_ids)}
    return GraphSpec(graph_id or unique("graph"), version, node_ids[0], nodes, edges)


def state(n: int) -> bytes:
    return json.dumps({"n": n}, separators=(",", ":")).encode()


async def start_run(store: Store, graph: GraphSpec, *, input: bytes = b"", run_id: str = "") -> str:
    """Register the graph (idempotent) and create a run of it; returns the run id."""
    await store.register_graph(graph)
    entry = graph.nodes[graph.entry_node]
    run = NewRun(
        run_id=run_id or unique("run"),
        graph_id=graph.graph_id,
        graph_version=graph.version,
        input=input or state(0),
        seed=uuid.uuid4().int >> 65,
        entry_node=entry.node_id,
        entry_queue=entry.task_queue,
    )
    _, created = await store.create_run(run)
    assert created
    return run.run_id


def commit_for(
    task: Task,
    graph: GraphSpec,
    *,
    result: bytes | None = None,
    eager_worker: str | None = None,
    lease: timedelta = LONG_LEASE,
) -> Checkpoint:
    """The checkpoint of `task`'s step, moving the run to the node after it (or ending it)."""
    next_node = graph.next_node(task.node_id, "next") or END_NODE
    return Checkpoint(
        key=task.key,
        graph_id=task.graph_id,
        graph_version=task.graph_version,
        node_id=task.node_id,
        state=result if result is not None else state(task.step_index + 1),
        state_hash=f"hash-{task.step_index}",
        output=b'"out"',
        next_key="next" if next_node != END_NODE else END_NODE,
        next_node=next_node,
        next_queue="" if next_node == END_NODE else graph.nodes[next_node].task_queue,
        started_at=datetime.now(UTC),
        eager=eager_worker is not None,
        lease=lease,
    )


async def claim(store: Store, graph: GraphSpec, *, worker_id: str = "w1", lease: timedelta = LONG_LEASE) -> Task | None:
    """Claim from the queues and the version of `graph`."""
    queues = sorted({n.task_queue for n in graph.nodes.values()})
    return await store.claim_task(task_queues=queues, graph_keys=[graph.key], worker_id=worker_id, lease=lease)


async def retry_task(store: Store, key: TaskKey, *, failure: Failure, delay: timedelta) -> None:
    """Fail an attempt so that the step is tried again after `delay`."""
    await store.fail_task(key, decide=lambda _: FailDecision(AttemptEnd.RETRY, failure, delay))


async def fail_run(store: Store, key: TaskKey, *, failure: Failure, cancelled: bool = False) -> None:
    """Fail an attempt so that the run ends FAILED (CANCELLED if `cancelled`)."""
    end = AttemptEnd.CANCEL if cancelled else AttemptEnd.FAIL
    await store.fail_task(key, decide=lambda _: FailDecision(end, failure))
