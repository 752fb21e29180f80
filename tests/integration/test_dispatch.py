"""Long-poll matching on real stores: a parked poller is handed a new run's entry task directly."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from cmo_server.app import CmoServer
from cmo_server.domain import Checkpoint, GraphSpec, NodeSpec, RunStatus, Task
from cmo_server.engine import TaskDispatcher
from cmo_server.store.sqlite import SqliteStore
from tests.support.waiting import assert_eventually


def one_node_graph() -> GraphSpec:
    return GraphSpec(f"g-{uuid.uuid4().hex[:8]}", 1, "only", {"only": NodeSpec("only", "q")}, {})


async def test_a_parked_poller_gets_the_entry_task_in_the_start_transaction(server: CmoServer):
    engine = server.engine
    graph = one_node_graph()
    await engine.register_graph(graph)
    poll = asyncio.create_task(
        engine.poll_task(worker_id="w1", task_queues=["q"], graphs=[(graph.graph_id, 1)], wait=10)
    )
    await assert_eventually(lambda: engine.parked_polls == 1, timeout=5, what="the poll parked")

    run, created = await engine.start_run(run_id="", graph_id=graph.graph_id, graph_version=1, input=b'{"a":1}')
    task = await asyncio.wait_for(poll, 5)

    assert created
    assert run.status is RunStatus.RUNNING  # leased as it was created: no PENDING, no claim
    assert task is not None
    assert (task.run_id, task.step_index, task.attempt, task.state) == (run.run_id, 0, 1, b'{"a":1}')
    # The lease is real: the same attempt checkpoints, and the run completes.
    outcome = await engine.complete_task(
        Checkpoint(
            key=task.key, graph_id=graph.graph_id, graph_version=1, node_id="only",
            state=b'{"a":2}', output=b"", next_key="__end__", started_at=datetime.now(UTC),
        )
    )  # fmt: skip
    assert outcome.run_status is RunStatus.COMPLETED
    assert (await engine.get_run(run.run_id)).result == b'{"a":2}'


async def test_a_task_handed_to_a_poll_that_already_returned_is_given_back(tmp_path):
    async with SqliteStore.open(tmp_path / "cmo.db") as store:
        dispatcher = TaskDispatcher(store)
        graph = one_node_graph()
        poll = asyncio.create_task(
            dispatcher.poll(
                task_queues=["q"], graph_keys=[graph.key], worker_id="w1", lease=timedelta(seconds=30), wait=0.3
            )
        )
        await assert_eventually(lambda: dispatcher.parked == 1, timeout=5, what="the poll parked")
        reserved = dispatcher.reserve("q", graph.key)
        assert reserved is not None
        assert dispatcher.parked == 0  # no one else wakes a reserved poller
        assert await poll is None  # it timed out before anything was handed over
        assert not dispatcher.hand_over(reserved, _some_task())  # the caller must release the task


def _some_task() -> Task:
    now = datetime.now(UTC)
    return Task("r", 0, 1, "only", "g", 1, "q", b"{}", now, 1, now, 0)
