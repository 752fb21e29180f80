"""Task claims, step completion, eager dispatch and the queue probes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from cmo_server.domain import END_NODE, RunStatus, Task
from cmo_server.store import Store
from tests.integration.contract.helpers import (
    LONG_LEASE,
    NS,
    chain_graph,
    claim,
    commit_for,
    start_run,
    state,
    unique,
)


async def test_claim_leases_the_entry_task_with_the_run_input(store: Store) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))
    run_id = await start_run(store, graph, input=state(10))
    run = await store.get_run(NS, run_id)
    assert run is not None

    task = await claim(store, graph, worker_id="w1", lease=timedelta(seconds=60))

    assert task is not None
    assert (task.run_id, task.step_index, task.attempt, task.node_id) == (run_id, 0, 1, "a")
    assert (task.graph_id, task.graph_version, task.task_queue) == (graph.graph_id, 1, graph.nodes["a"].task_queue)
    assert (task.state, task.seed, task.failures) == (state(10), run.seed, 0)
    assert task.logical_time == run.created_at
    assert timedelta(seconds=59) < task.lease_expires_at - run.created_at < timedelta(seconds=70)
    current = await store.get_task(NS, run_id)
    assert current is not None
    assert (current.step_index, current.attempt, current.node_id, current.lease_owner) == (0, 1, "a", "w1")
    assert (current.graph_id, current.graph_version, current.task_queue) == (graph.graph_id, 1, task.task_queue)
    assert current.failures == 0


async def test_claim_returns_the_previous_checkpoint_as_state(store: Store) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))
    run_id = await start_run(store, graph, input=state(0))
    first = await claim(store, graph)
    assert first is not None
    outcome = await store.complete_step(commit_for(first, graph, result=state(99)))
    assert outcome.enqueued == (graph.nodes["b"].task_queue, graph.key)
    assert (outcome.run_status, outcome.next_task, outcome.duplicate) == (RunStatus.RUNNING, None, False)

    second = await claim(store, graph, worker_id="w2")

    assert second is not None
    assert (second.run_id, second.step_index, second.attempt, second.node_id) == (run_id, 1, 1, "b")
    assert second.state == state(99)
    assert second.seed == first.seed


async def test_claim_returns_none_when_nothing_is_ready(store: Store) -> None:
    graph = chain_graph("a", queue=unique("q"))
    await store.register_graph(graph)

    assert await claim(store, graph) is None


async def test_claim_filters_by_queue_and_graph_version(store: Store) -> None:
    queue, other_queue = unique("q"), unique("q")
    graph = chain_graph("a", queue=queue)
    newer = chain_graph("a", queue=queue, graph_id=graph.graph_id, version=2)
    run_id = await start_run(store, graph)

    for queues, keys in (
        ([other_queue], [graph.key]),
        ([queue], [newer.key]),
        ([queue], []),
        ([], [graph.key]),
    ):
        assert await store.claim_task(task_queues=queues, graph_keys=keys, worker_id="w", lease=LONG_LEASE) is None

    task = await store.claim_task(
        task_queues=[other_queue, queue], graph_keys=[newer.key, graph.key], worker_id="w", lease=LONG_LEASE
    )
    assert task is not None
    assert task.run_id == run_id


async def test_claim_takes_the_oldest_ready_task_first(store: Store) -> None:
    graph = chain_graph("a", queue=unique("q"))
    run_ids = [await start_run(store, graph) for _ in range(5)]

    claimed = [await claim(store, graph) for _ in range(5)]

    assert [t.run_id for t in claimed if t is not None] == run_ids


async def test_a_leased_task_is_not_claimable(store: Store) -> None:
    graph = chain_graph("a", queue=unique("q"))
    await start_run(store, graph)
    assert await claim(store, graph, worker_id="w1", lease=LONG_LEASE) is not None

    assert await claim(store, graph, worker_id="w2") is None


async def test_completing_with_eager_dispatch_leases_the_next_task_to_the_same_worker(store: Store) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))
    run_id = await start_run(store, graph)
    first = await claim(store, graph, worker_id="w1")
    assert first is not None
    commit = commit_for(first, graph, result=state(5), eager_worker="w1", lease=timedelta(seconds=60))

    outcome = await store.complete_step(commit)

    assert (outcome.run_status, outcome.enqueued, outcome.duplicate) == (RunStatus.RUNNING, None, False)
    task = outcome.next_task
    assert task is not None
    assert (task.run_id, task.step_index, task.attempt, task.node_id) == (run_id, 1, 1, "b")
    assert (task.graph_id, task.graph_version, task.task_queue) == (graph.graph_id, 1, graph.nodes["b"].task_queue)
    assert (task.state, task.seed, task.failures) == (state(5), first.seed, 0)
    assert task.lease_expires_at - task.logical_time == timedelta(seconds=60)
    (step,) = await store.get_steps(NS, run_id)
    assert task.logical_time == step.finished_at
    current = await store.get_task(NS, run_id)
    assert current is not None
    assert (current.step_index, current.attempt, current.lease_owner) == (1, 1, "w1")
    assert await claim(store, graph, worker_id="w2") is None  # it is leased to w1

    done = await store.complete_step(commit_for(task, graph))
    assert done.run_status == RunStatus.COMPLETED


async def test_completing_the_last_step_completes_the_run(store: Store) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))
    run_id = await start_run(store, graph)
    first = await claim(store, graph)
    assert first is not None
    second = (await store.complete_step(commit_for(first, graph, eager_worker="w1"))).next_task
    assert second is not None
    last = commit_for(second, graph, result=state(42))
    assert last.next_node == END_NODE

    outcome = await store.complete_step(last)

    assert (outcome.run_status, outcome.next_task, outcome.enqueued) == (RunStatus.COMPLETED, None, None)
    assert outcome.duplicate is False
    run = await store.get_run(NS, run_id)
    assert run is not None
    assert (run.status, run.result, run.step_count, run.current_node) == (RunStatus.COMPLETED, state(42), 2, "")
    assert run.completed_at is not None
    assert run.completed_at == run.updated_at >= run.created_at
    assert run.failure is None
    assert await store.get_task(NS, run_id) is None
    assert await claim(store, graph) is None
    assert [s.next_node for s in await store.get_steps(NS, run_id)] == ["b", END_NODE]


async def test_resending_a_completed_step_is_a_no_op(store: Store) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))
    run_id = await start_run(store, graph)
    first = await claim(store, graph)
    assert first is not None
    commit = commit_for(first, graph)
    await store.complete_step(commit)

    again = await store.complete_step(commit)

    assert (again.duplicate, again.run_status, again.next_task, again.enqueued) == (True, RunStatus.RUNNING, None, None)
    assert len(await store.get_steps(NS, run_id)) == 1
    current = await store.get_task(NS, run_id)
    assert current is not None
    assert (current.step_index, current.attempt) == (1, 0)


async def test_resending_the_last_step_reports_the_completed_run(store: Store) -> None:
    graph = chain_graph("a", queue=unique("q"))
    run_id = await start_run(store, graph)
    task = await claim(store, graph)
    assert task is not None
    commit = commit_for(task, graph)
    await store.complete_step(commit)

    again = await store.complete_step(commit)

    assert (again.duplicate, again.run_status) == (True, RunStatus.COMPLETED)
    assert len(await store.get_steps(NS, run_id)) == 1


async def test_ready_queues_names_the_queues_and_graphs_with_ready_tasks(store: Store) -> None:
    q1, q2, q3 = unique("q"), unique("q"), unique("q")
    g1 = chain_graph("a", queue=q1)
    g2 = chain_graph("a", queue=q2)
    g3 = chain_graph("a", queue=q3)
    await start_run(store, g1)
    await start_run(store, g2)
    await start_run(store, g3)
    await start_run(store, g3)

    assert await store.ready_queues([q1, q2, unique("q")]) == {(q1, g1.key), (q2, g2.key)}
    assert await store.ready_queues([unique("q")]) == set()

    assert await claim(store, g1) is not None
    assert await claim(store, g3) is not None
    assert await store.ready_queues([q1, q2, q3]) == {(q2, g2.key), (q3, g3.key)}  # one run of g3 is left


async def test_next_ready_at_is_the_earliest_time_a_task_becomes_ready(store: Store) -> None:
    queue = unique("q")
    graph = chain_graph("a", queue=queue)
    assert await store.next_ready_at([queue]) is None
    run_id = await start_run(store, graph)
    run = await store.get_run(NS, run_id)
    assert run is not None
    assert await store.next_ready_at([queue]) == run.created_at  # ready since it was created

    task = await claim(store, graph, lease=timedelta(seconds=60))
    assert task is not None
    assert await store.next_ready_at([queue]) == task.lease_expires_at
    assert await store.next_ready_at([unique("q")]) is None


async def test_concurrent_claimers_never_share_a_task(store: Store) -> None:
    graph = chain_graph("a", queue=unique("q"))
    run_ids = {await start_run(store, graph) for _ in range(400)}

    async def claimer(worker_id: str) -> list[Task]:
        claimed = []
        while (task := await claim(store, graph, worker_id=worker_id)) is not None:
            claimed.append(task)
        return claimed

    # On Postgres the fixture's pool has 4 connections: each claimer's statements run on its own.
    results = await asyncio.gather(*(claimer(f"w{i}") for i in range(4)))

    claimed = [t.run_id for tasks in results for t in tasks]
    assert len(claimed) == 400
    assert set(claimed) == run_ids
    assert all(t.attempt == 1 for tasks in results for t in tasks)
