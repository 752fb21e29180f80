"""Long-poll matching on real stores: a parked poller is handed a new run's entry task directly."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from cmo_server.app import CmoServer
from cmo_server.domain import Checkpoint, GraphSpec, NodeSpec, RunStatus, Task
from cmo_server.engine import TaskDispatcher
from cmo_server.store import Store
from cmo_server.store.sqlite import SqliteStore
from tests.integration.contract.helpers import NS, chain_graph, start_run
from tests.support.waiting import assert_eventually


def one_node_graph() -> GraphSpec:
    return GraphSpec(f"g-{uuid.uuid4().hex[:8]}", 1, "only", {"only": NodeSpec("only", "q")}, {})


async def test_a_parked_poller_gets_the_entry_task_in_the_start_transaction(server: CmoServer):
    engine = server.engine
    graph = one_node_graph()
    await engine.register_graph(graph)
    poll = asyncio.create_task(
        engine.poll_task(NS, worker_id="w1", task_queues=["q"], graphs=[(graph.graph_id, 1)], wait=10)
    )
    await assert_eventually(lambda: engine.parked_polls == 1, timeout=5, what="the poll parked")

    run, created = await engine.start_run(NS, run_id="", graph_id=graph.graph_id, graph_version=1, input=b'{"a":1}')
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
    assert (await engine.get_run(NS, run.run_id)).result == b'{"a":2}'


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
    return Task(NS, "r", 0, 1, "only", "g", 1, "q", b"{}", now, 1, now, 0)


class _CountingClaims:
    """The store, counting the claim statements a dispatcher runs."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.claims = 0

    async def claim_task(self, **kwargs: Any) -> Task | None:
        self.claims += 1
        return await self._store.claim_task(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_a_poll_parks_without_a_claim_when_nothing_was_made_ready_since_the_last_empty_one(tmp_path):
    async with SqliteStore.open(tmp_path / "cmo.db") as sqlite:
        store = _CountingClaims(sqlite)
        dispatcher = TaskDispatcher(cast(Store, store), sweep_interval=0.05)
        graph = chain_graph("a", queue="q")
        await sqlite.register_graph(graph)
        lease = timedelta(seconds=30)

        async def poll(wait: float = 0.05) -> Task | None:
            return await dispatcher.poll(
                task_queues=["q"], graph_keys=[graph.key], worker_id="w1", lease=lease, wait=wait
            )

        assert await poll() is None
        assert await poll() is None
        assert store.claims == 1  # the second poll knew the queue was empty

        # An enqueue announced in this process: the next poll claims, and gets the task.
        run_id = await start_run(sqlite, graph)
        dispatcher.notify("q", graph.key)
        task = await poll()
        assert task is not None
        assert task.run_id == run_id
        assert store.claims == 2

        # A task made ready without an announcement (another process wrote it) is found by the
        # sweep, which runs while a poll is parked, and the woken poll claims it.
        assert await poll() is None
        claims = store.claims
        other = await start_run(sqlite, graph)
        sweeps = asyncio.create_task(dispatcher.run_sweeps())
        try:
            found = await poll(wait=5)
        finally:
            sweeps.cancel()
        assert found is not None
        assert found.run_id == other
        assert store.claims == claims + 1

        # Notifications that stop or resume may have missed something: claim again.
        assert await poll() is None
        claims = store.claims
        dispatcher.push_stopped()
        assert await poll() is None
        assert store.claims == claims + 1


async def test_a_worker_that_departed_has_its_polls_ended_and_refused(tmp_path):
    async with SqliteStore.open(tmp_path / "cmo.db") as sqlite:
        store = _CountingClaims(sqlite)
        dispatcher = TaskDispatcher(cast(Store, store))
        graph = chain_graph("a", queue="q")
        await sqlite.register_graph(graph)
        lease = timedelta(seconds=30)

        def poll(worker_id: str, wait: float) -> asyncio.Task[Task | None]:
            return asyncio.create_task(
                dispatcher.poll(task_queues=["q"], graph_keys=[graph.key], worker_id=worker_id, lease=lease, wait=wait)
            )

        parked = poll("w1", 30)
        await assert_eventually(lambda: dispatcher.parked == 1, timeout=5, what="the poll parked")
        dispatcher.worker_departed("w1")
        assert await asyncio.wait_for(parked, 1) is None  # at once, not after 30 s
        claims = store.claims
        assert await asyncio.wait_for(poll("w1", 30), 1) is None  # a poll arriving late: refused
        assert store.claims == claims
        # The task goes to a worker that is still there.
        other = poll("w2", 5)
        await assert_eventually(lambda: dispatcher.parked == 1, timeout=5, what="w2 parked")
        run_id = await start_run(sqlite, graph)
        dispatcher.notify("q", graph.key)
        task = await asyncio.wait_for(other, 5)
        assert task is not None
        assert (task.run_id, task.attempt) == (run_id, 1)
