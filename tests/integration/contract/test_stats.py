"""What the metrics endpoint and the web UI read: ready tasks by queue, runs by status and by graph
version, lapsed leases at claim."""

from __future__ import annotations

from datetime import timedelta

from cmo_server.domain import Failure, Namespace, RunStatus, Task
from cmo_server.store import Store
from tests.integration.contract.helpers import (
    LONG_LEASE,
    NS,
    SHORT_LEASE,
    chain_graph,
    claim,
    commit_for,
    fail_run,
    retry_task,
    start_run,
    unique,
)
from tests.support.waiting import assert_eventually


async def test_queue_depths_count_ready_tasks_by_queue(store: Store) -> None:
    q1, q2 = unique("q"), unique("q")
    g1, g2 = chain_graph("a", queue=q1), chain_graph("a", queue=q2)
    for graph in (g1, g1, g1, g2):
        await start_run(store, graph)
    assert await depths(store) == {q1: 3, q2: 1}

    leased = await claim(store, g1, lease=LONG_LEASE)
    lapsing = await claim(store, g1, lease=SHORT_LEASE)
    assert leased is not None
    assert lapsing is not None
    assert await depths(store) == {q1: 1, q2: 1}  # leased tasks are not ready

    # A lapsed lease makes its task ready again; a finished run leaves the queue.
    await assert_eventually(lambda: _depths_are(store, {q1: 2, q2: 1}), what="the lapsed task counted")
    await store.complete_step(commit_for(leased, g1))
    assert await depths(store) == {q1: 2, q2: 1}
    only = await claim(store, g2)
    assert only is not None
    await store.complete_step(commit_for(only, g2))
    assert await depths(store) == {q1: 2}


async def depths(store: Store) -> dict[str, int]:
    """Ready tasks by queue, of the tests' namespace."""
    return {queue: n for (namespace, queue), n in (await store.queue_depths()).items() if namespace == NS}


async def counts(store: Store) -> dict[RunStatus, int]:
    """Runs by status, of the tests' namespace."""
    return {status: n for (namespace, status), n in (await store.count_runs_by_status()).items() if namespace == NS}


async def _depths_are(store: Store, expected: dict[str, int]) -> bool:
    return await depths(store) == expected


async def test_runs_are_counted_by_status(store: Store) -> None:
    assert await counts(store) == {}
    graph = chain_graph("a", queue=unique("q"))
    for _ in range(3):
        await start_run(store, graph)
    assert await counts(store) == {RunStatus.PENDING: 3}

    first = await claim(store, graph)
    second = await claim(store, graph)
    assert first is not None
    assert second is not None
    await store.complete_step(commit_for(first, graph))
    await fail_run(store, second.key, failure=Failure("boom", type="RuntimeError"))

    assert await counts(store) == {
        RunStatus.PENDING: 1,
        RunStatus.COMPLETED: 1,
        RunStatus.FAILED: 1,
    }


async def test_a_claim_says_when_it_took_the_task_from_a_lapsed_lease(store: Store) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))
    await start_run(store, graph)
    first = await claim(store, graph, worker_id="w1", lease=SHORT_LEASE)
    assert first is not None
    assert not first.previous_lease_expired

    second: Task = await assert_eventually(lambda: claim(store, graph, worker_id="w2"))
    assert second.previous_lease_expired
    assert second.attempt == first.attempt + 1

    # A released or retried attempt gave its lease up: the next claim is no expiry.
    await store.release_task(second.key)
    third = await claim(store, graph, worker_id="w3")
    assert third is not None
    assert not third.previous_lease_expired
    await retry_task(store, third.key, failure=Failure("boom", type="RuntimeError"), delay=timedelta(0))
    fourth = await claim(store, graph, worker_id="w4")
    assert fourth is not None
    assert not fourth.previous_lease_expired

    # The next step's task starts afresh.
    await store.complete_step(commit_for(fourth, graph))
    fifth = await claim(store, graph, worker_id="w5")
    assert fifth is not None
    assert (fifth.step_index, fifth.previous_lease_expired) == (1, False)


async def test_runs_are_counted_by_graph_version_and_status_in_their_namespace_only(store: Store) -> None:
    queue = unique("q")
    graph_id = unique("graph")
    v1 = chain_graph("a", queue=queue, graph_id=graph_id, version=1)
    v2 = chain_graph("a", "b", queue=queue, graph_id=graph_id, version=2)
    other = chain_graph("a", queue=queue)
    for graph in (v1, v1, v2, other):
        await start_run(store, graph)
    done = await claim(store, v1)
    assert done is not None
    await store.complete_step(commit_for(done, v1))

    found = {key: n for key, n in (await store.count_runs_by_graph(NS)).items() if key[0] == graph_id}
    assert found == {
        (graph_id, 1, RunStatus.PENDING): 1,
        (graph_id, 1, RunStatus.COMPLETED): 1,
        (graph_id, 2, RunStatus.PENDING): 1,
    }
    assert await store.count_runs_by_graph(Namespace("nobody", "here")) == {}
