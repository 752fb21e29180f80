"""Leases and fencing: expiry, retries, releases, failures, and what a stale attempt may not do."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from cmo_server.domain import ActivityRecord, AttemptEnd, FailDecision, Failure, RunStatus, Task, TaskKey, TaskState
from cmo_server.errors import FailedPrecondition, StaleLease
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

FAILURE = Failure("boom", type="RuntimeError", details="Traceback …", node_id="a", step_index=0, attempt=1)


async def test_an_expired_lease_makes_the_task_claimable_at_the_next_attempt(store: Store) -> None:
    graph = chain_graph("a", queue=unique("q"))
    run_id = await start_run(store, graph)
    first = await claim(store, graph, worker_id="w1", lease=SHORT_LEASE)
    assert first is not None

    second: Task = await assert_eventually(lambda: claim(store, graph, worker_id="w2", lease=LONG_LEASE))

    assert (second.run_id, second.step_index, second.attempt) == (run_id, 0, first.attempt + 1)
    claimed_at = second.lease_expires_at - LONG_LEASE
    assert claimed_at >= first.lease_expires_at  # not before the first lease ran out
    current = await store.get_task(NS, run_id)
    assert current is not None
    assert (current.attempt, current.lease_owner) == (2, "w2")
    run = await store.get_run(NS, run_id)
    assert run is not None
    assert run.status == RunStatus.RUNNING


async def test_a_stale_attempt_cannot_complete_its_step(store: Store) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))
    run_id = await start_run(store, graph)
    first = await claim(store, graph, worker_id="w1", lease=timedelta(0))
    second = await claim(store, graph, worker_id="w2", lease=LONG_LEASE)
    assert first is not None
    assert second is not None
    assert second.attempt == first.attempt + 1

    with pytest.raises(StaleLease) as caught:
        await store.complete_step(commit_for(first, graph))

    assert (caught.value.run_id, caught.value.step_index, caught.value.attempt) == (run_id, 0, first.attempt)
    assert await store.get_steps(NS, run_id) == []  # the zombie left nothing behind
    current = await store.get_task(NS, run_id)
    assert current is not None
    assert (current.step_index, current.attempt, current.lease_owner) == (0, 2, "w2")
    outcome = await store.complete_step(commit_for(second, graph))  # the current attempt still can
    assert outcome.duplicate is False
    assert [s.attempt for s in await store.get_steps(NS, run_id)] == [2]


async def test_a_stale_attempt_cannot_resend_over_a_step_another_attempt_completed(store: Store) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))
    run_id = await start_run(store, graph)
    first = await claim(store, graph, worker_id="w1", lease=timedelta(0))
    second = await claim(store, graph, worker_id="w2")
    assert first is not None
    assert second is not None
    await store.complete_step(commit_for(second, graph))

    with pytest.raises(StaleLease):
        await store.complete_step(commit_for(first, graph))

    assert [s.attempt for s in await store.get_steps(NS, run_id)] == [second.attempt]


@pytest.mark.parametrize("field", ["node_id", "graph_version"])
async def test_complete_step_is_fenced_on_node_and_graph_version(store: Store, field: str) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))
    run_id = await start_run(store, graph)
    task = await claim(store, graph)
    assert task is not None
    commit = commit_for(task, graph)
    wrong = {"node_id": "b"} if field == "node_id" else {"graph_version": 2}

    with pytest.raises(StaleLease):
        await store.complete_step(dataclasses.replace(commit, **wrong))

    assert await store.get_steps(NS, run_id) == []


async def test_retry_hides_the_task_until_the_delay_has_passed(store: Store) -> None:
    queue = unique("q")
    graph = chain_graph("a", queue=queue)
    run_id = await start_run(store, graph)
    first = await claim(store, graph, worker_id="w1")
    assert first is not None
    delay = timedelta(milliseconds=200)
    claimed_at = first.lease_expires_at - LONG_LEASE

    await retry_task(store, first.key, failure=FAILURE, delay=delay)

    current = await store.get_task(NS, run_id)
    assert current is not None
    assert (current.attempt, current.failures, current.lease_owner) == (1, 1, None)
    ready_at = await store.next_ready_at([queue])
    assert ready_at is not None
    assert ready_at >= claimed_at + delay
    second: Task = await assert_eventually(lambda: claim(store, graph, worker_id="w2"))
    assert (second.attempt, second.failures) == (2, 1)
    assert second.lease_expires_at - LONG_LEASE >= ready_at  # not claimed before the delay was over

    await retry_task(store, second.key, failure=FAILURE, delay=timedelta(0))
    third = await claim(store, graph, worker_id="w3")
    assert third is not None
    assert (third.attempt, third.failures) == (3, 2)


async def test_release_makes_the_task_ready_at_once_without_counting_a_failure(store: Store) -> None:
    graph = chain_graph("a", queue=unique("q"))
    run_id = await start_run(store, graph)
    first = await claim(store, graph, worker_id="w1")
    assert first is not None

    await store.release_task(first.key)

    current = await store.get_task(NS, run_id)
    assert current is not None
    assert (current.attempt, current.failures, current.lease_owner) == (1, 0, None)
    second = await claim(store, graph, worker_id="w2")
    assert second is not None
    assert (second.attempt, second.failures) == (2, 0)


async def test_fail_run_finishes_the_run_with_the_failure(store: Store) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))
    run_id = await start_run(store, graph)
    first = await claim(store, graph)
    assert first is not None
    await store.complete_step(commit_for(first, graph))
    second = await claim(store, graph)
    assert second is not None
    failure = Failure("no", type="ValueError", non_retryable=True, node_id="b", step_index=1, attempt=1)

    await fail_run(store, second.key, failure=failure)

    run = await store.get_run(NS, run_id)
    assert run is not None
    assert (run.status, run.failure, run.result) == (RunStatus.FAILED, failure, None)
    assert (run.step_count, run.current_node) == (1, "")
    assert run.completed_at is not None
    assert run.completed_at == run.updated_at
    assert await store.get_task(NS, run_id) is None
    assert await claim(store, graph) is None
    assert len(await store.get_steps(NS, run_id)) == 1
    runs, _ = await store.list_runs(NS, status=RunStatus.FAILED)
    assert [r.run_id for r in runs] == [run_id]


async def test_extend_lease_pushes_the_expiry(store: Store) -> None:
    queue = unique("q")
    graph = chain_graph("a", queue=queue)
    await start_run(store, graph)
    task = await claim(store, graph, lease=timedelta(seconds=5))
    assert task is not None

    expires, _ = await store.extend_lease(task.key, lease=timedelta(seconds=60))

    assert expires - task.lease_expires_at >= timedelta(seconds=55)
    assert await store.next_ready_at([queue]) == expires
    assert await claim(store, graph, worker_id="w2") is None


async def test_extend_lease_revives_an_expired_lease_nobody_took(store: Store) -> None:
    queue = unique("q")
    graph = chain_graph("a", queue=queue)
    await start_run(store, graph)
    task = await claim(store, graph, lease=timedelta(0))
    assert task is not None

    expires, _ = await store.extend_lease(task.key, lease=LONG_LEASE)

    assert expires > task.lease_expires_at
    assert await claim(store, graph, worker_id="w2") is None


Write = Callable[[Store, TaskKey], Awaitable[object]]
WRITES: dict[str, Write] = {
    "extend_lease": lambda s, k: s.extend_lease(k, lease=LONG_LEASE),
    "retry_task": lambda s, k: retry_task(s, k, failure=FAILURE, delay=timedelta(0)),
    "release_task": lambda s, k: s.release_task(k),
    "fail_run": lambda s, k: fail_run(s, k, failure=FAILURE),
    "record_activity": lambda s, k: s.record_activity(k, ActivityRecord(0, "call", "x", "h", b"1", None, k.attempt)),
}


@pytest.mark.parametrize("write", [*WRITES, "complete_step"])
async def test_only_the_worker_holding_the_lease_may_write(store: Store, write: str) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))
    run_id = await start_run(store, graph)
    task = await claim(store, graph, worker_id="w1")
    assert task is not None
    foreign = dataclasses.replace(task.key, worker_id="w2")  # the right attempt, sent by another worker

    if write == "complete_step":
        attempt: Awaitable[object] = store.complete_step(dataclasses.replace(commit_for(task, graph), key=foreign))
    else:
        attempt = WRITES[write](store, foreign)
    with pytest.raises(StaleLease):
        await attempt

    current = await store.get_task(NS, run_id)
    assert current is not None
    assert (current.step_index, current.attempt, current.failures, current.lease_owner) == (0, 1, 0, "w1")
    assert await store.get_steps(NS, run_id) == []
    assert await claim(store, graph, worker_id="w3") is None
    await store.complete_step(commit_for(task, graph))  # the holder still can


@pytest.mark.parametrize(
    "change", [{"state": b'{"n":99}', "state_hash": "other"}, {"output": b'"other"'}, {"next_key": "__end__"}]
)
async def test_a_resent_checkpoint_is_accepted_only_when_identical(store: Store, change: dict[str, Any]) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))
    run_id = await start_run(store, graph)
    task = await claim(store, graph)
    assert task is not None
    commit = commit_for(task, graph)
    await store.complete_step(commit)

    again = await store.complete_step(commit)
    assert again.duplicate
    with pytest.raises(FailedPrecondition):
        await store.complete_step(dataclasses.replace(commit, **change))
    (step,) = await store.get_steps(NS, run_id)
    assert (step.state, step.output, step.next_key) == (commit.state, commit.output, commit.next_key)


async def test_fail_task_decides_on_the_task_as_stored_and_a_refusal_writes_nothing(store: Store) -> None:
    graph = chain_graph("a", queue=unique("q"))
    run_id = await start_run(store, graph)
    task = await claim(store, graph)
    assert task is not None
    riding = (ActivityRecord(0, "call", "charge", "h0", b"1", None, task.attempt),)
    seen: list[TaskState] = []

    def refuse(current: TaskState) -> FailDecision:
        seen.append(current)
        raise FailedPrecondition("no")

    with pytest.raises(FailedPrecondition):
        await store.fail_task(task.key, decide=refuse, activities=riding)
    assert [(t.run_id, t.attempt, t.failures, t.lease_owner) for t in seen] == [(run_id, 1, 0, "w1")]
    current = await store.get_task(NS, run_id)
    assert current is not None
    assert (current.attempt, current.failures, current.lease_owner) == (1, 0, "w1")  # nothing counted
    again = await claim(store, graph)
    assert again is None  # still leased

    retry = FailDecision(AttemptEnd.RETRY, FAILURE, timedelta(0))
    before, decision = await store.fail_task(task.key, decide=lambda _: retry, activities=riding)
    assert (before.failures, decision) == (0, retry)
    next_attempt = await claim(store, graph, worker_id="w2")
    assert next_attempt is not None
    assert (next_attempt.attempt, next_attempt.failures) == (2, 1)
    assert [(a.seq, a.name, a.result) for a in next_attempt.activities] == [(0, "charge", b"1")]  # stored with it


@pytest.mark.parametrize("write", WRITES)
async def test_writes_of_a_stale_attempt_are_refused(store: Store, write: str) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))
    run_id = await start_run(store, graph)
    first = await claim(store, graph, worker_id="w1", lease=timedelta(0))
    second = await claim(store, graph, worker_id="w2")
    assert first is not None
    assert second is not None

    with pytest.raises(StaleLease):
        await WRITES[write](store, first.key)

    current = await store.get_task(NS, run_id)
    assert current is not None
    assert (current.attempt, current.failures, current.lease_owner) == (2, 0, "w2")
    run = await store.get_run(NS, run_id)
    assert run is not None
    assert run.status == RunStatus.RUNNING
    assert await claim(store, graph, worker_id="w3") is None  # still leased to w2


@pytest.mark.parametrize("write", WRITES)
async def test_writes_to_an_unleased_task_are_refused(store: Store, write: str) -> None:
    graph = chain_graph("a", queue=unique("q"))
    run_id = await start_run(store, graph)
    task = await claim(store, graph)
    assert task is not None
    await store.release_task(task.key)  # the attempt gave the task back: it holds nothing now

    with pytest.raises(StaleLease):
        await WRITES[write](store, task.key)
    with pytest.raises(StaleLease):
        await WRITES[write](store, TaskKey(NS, run_id, 0, 0, "w1"))  # never claimed at all
    with pytest.raises(StaleLease):
        await WRITES[write](store, TaskKey(NS, unique("run"), 0, 1, "w1"))


@pytest.mark.parametrize("write", WRITES)
async def test_writes_after_the_step_is_done_are_refused(store: Store, write: str) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))
    run_id = await start_run(store, graph)
    task = await claim(store, graph)
    assert task is not None
    await store.complete_step(commit_for(task, graph, eager_worker="w1"))

    with pytest.raises(StaleLease):
        await WRITES[write](store, task.key)

    current = await store.get_task(NS, run_id)
    assert current is not None
    assert (current.step_index, current.attempt, current.lease_owner) == (1, 1, "w1")
