"""Waits: a step suspended on a signal or a timer, woken by a signal, the timer sweep or a cancellation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from cmo_server.domain import (
    CANCELLED_ERROR,
    SIGNAL_TIMEOUT_ERROR,
    WAIT_SIGNAL,
    WAIT_TIMER,
    ActivityRecord,
    Failure,
    GraphSpec,
    NewSignal,
    RunStatus,
    Task,
    Wait,
    WaitRequest,
    cancelled_failure,
)
from cmo_server.errors import FailedPrecondition, StaleLease
from cmo_server.store import Store
from tests.integration.contract.conftest import Database
from tests.integration.contract.helpers import (
    LONG_LEASE,
    chain_graph,
    claim,
    fail_run,
    retry_task,
    start_run,
    unique,
)
from tests.support.waiting import assert_eventually

STOP = cancelled_failure("stop")


def signal_wait(seq: int = 0, name: str = "approve", *, timeout: timedelta | None = None) -> WaitRequest:
    return WaitRequest(seq, WAIT_SIGNAL, name, timeout, f"hash-signal-{seq}")


def timer(duration: timedelta, seq: int = 0) -> WaitRequest:
    return WaitRequest(seq, WAIT_TIMER, "", duration, f"hash-timer-{seq}")


def signal(run_id: str, payload: bytes, *, name: str = "approve", request_id: str = "") -> NewSignal:
    return NewSignal(run_id, name, payload, request_id)


async def claimed(store: Store, graph: GraphSpec) -> Task:
    task = await claim(store, graph)
    assert task is not None
    return task


async def started(store: Store, *, queue: str = "") -> tuple[GraphSpec, Task]:
    """A one-node graph and the leased first attempt of its run."""
    graph = chain_graph("a", queue=queue or unique("q"))
    await start_run(store, graph)
    return graph, await claimed(store, graph)


def outcomes(task: Task) -> list[tuple[int, str, str, str, bytes | None, str]]:
    """The task's activity records as (seq, kind, name, request_hash, result, error type)."""
    return [(a.seq, a.kind, a.name, a.request_hash, a.result, a.error.type if a.error else "") for a in task.activities]


async def test_a_suspended_step_waits_unclaimable_with_the_run_waiting(store: Store) -> None:
    queue = unique("q")
    graph, task = await started(store, queue=queue)
    riding = ActivityRecord(0, "call", "charge", "hash-0", b'{"ok":1}', None, task.attempt)

    outcome = await store.suspend_task(task.key, signal_wait(1), activities=(riding,))

    assert (outcome.resumed, outcome.ready, outcome.wake_at) == (False, (queue, graph.key), None)
    run = await store.get_run(task.run_id)
    assert run is not None
    assert run.status == RunStatus.WAITING
    assert run.waiting == Wait(WAIT_SIGNAL, "approve", None, step_index=0, seq=1)
    assert await claim(store, graph) is None
    assert await store.ready_queues([queue]) == set()
    assert await store.next_ready_at([queue]) is None
    with pytest.raises(StaleLease):  # the attempt ended with the suspension
        await store.extend_lease(task.key, lease=LONG_LEASE)

    delivered = await store.signal_run(signal(task.run_id, b'{"yes":true}'))

    assert delivered is not None
    assert (delivered.delivered, delivered.ready) == (True, (queue, graph.key))
    assert (delivered.run.status, delivered.run.waiting) == (RunStatus.RUNNING, None)
    resumed = await claimed(store, graph)
    assert resumed.attempt == task.attempt + 1
    assert outcomes(resumed) == [
        (0, "call", "charge", "hash-0", b'{"ok":1}', ""),
        (1, WAIT_SIGNAL, "approve", "hash-signal-1", b'{"yes":true}', ""),
    ]
    assert resumed.activities[1].attempt == task.attempt


async def test_a_stale_attempt_cannot_suspend(store: Store) -> None:
    graph = chain_graph("a", queue=unique("q"))
    run_id = await start_run(store, graph)
    first = await claim(store, graph, lease=timedelta(0))
    second = await claimed(store, graph)
    assert first is not None
    riding = ActivityRecord(0, "call", "charge", "hash-0", b'{"stale":1}', None, first.attempt)

    with pytest.raises(StaleLease):
        await store.suspend_task(first.key, signal_wait(1), activities=(riding,))

    run = await store.get_run(run_id)
    assert run is not None
    assert (run.status, run.waiting) == (RunStatus.RUNNING, None)
    current = await store.get_task(run_id)
    assert current is not None
    assert (current.attempt, current.lease_owner) == (second.attempt, "w1")
    mine = await store.record_activity(
        second.key, ActivityRecord(0, "call", "charge", "hash-0", b"1", None, second.attempt)
    )
    assert mine.result == b"1"  # the stale riding record was not stored


async def test_a_signal_sent_before_the_wait_is_kept_and_taken_at_once(store: Store) -> None:
    queue = unique("q")
    graph, task = await started(store, queue=queue)

    kept = await store.signal_run(signal(task.run_id, b'"early"'))

    assert kept is not None
    assert (kept.delivered, kept.ready, kept.run.status) == (False, None, RunStatus.RUNNING)
    outcome = await store.suspend_task(task.key, signal_wait(0))
    assert (outcome.resumed, outcome.ready) == (True, (queue, graph.key))
    run = await store.get_run(task.run_id)
    assert run is not None
    assert (run.status, run.waiting) == (RunStatus.RUNNING, None)
    resumed = await claimed(store, graph)
    assert outcomes(resumed) == [(0, WAIT_SIGNAL, "approve", "hash-signal-0", b'"early"', "")]


async def test_signals_of_one_name_are_taken_in_order_and_a_repeated_request_id_is_ignored(store: Store) -> None:
    graph, task = await started(store)
    for payload, request_id in ((b"1", "r1"), (b"2", "r1"), (b"3", ""), (b"4", "")):
        await store.signal_run(signal(task.run_id, payload, request_id=request_id))
    # Signals of another name are not taken by these waits.
    await store.signal_run(signal(task.run_id, b"0", name="other"))

    for seq in range(3):
        outcome = await store.suspend_task(task.key, signal_wait(seq))
        assert outcome.resumed
        task = await claimed(store, graph)
    assert [(a.seq, a.result) for a in task.activities] == [(0, b"1"), (1, b"3"), (2, b"4")]
    assert not (await store.suspend_task(task.key, signal_wait(3))).resumed  # "2" repeated r1: not kept


async def test_signal_run_on_an_unknown_or_ended_run(store: Store) -> None:
    assert await store.signal_run(signal(unique("run"), b"1")) is None
    _, task = await started(store)
    await fail_run(store, task.key, failure=Failure("no", type="ValueError"))

    with pytest.raises(FailedPrecondition):
        await store.signal_run(signal(task.run_id, b"1"))


async def test_a_timer_fires_once_when_it_is_due(store: Store) -> None:
    queue = unique("q")
    graph, task = await started(store, queue=queue)

    outcome = await store.suspend_task(task.key, timer(timedelta(milliseconds=200)))

    assert not outcome.resumed
    assert outcome.wake_at is not None
    run = await store.get_run(task.run_id)
    assert run is not None
    assert run.waiting == Wait(WAIT_TIMER, "", outcome.wake_at, step_index=0, seq=0)
    suspended_at = task.lease_expires_at - LONG_LEASE  # the claim's time: the suspension came after
    assert (
        suspended_at + timedelta(milliseconds=200) <= outcome.wake_at <= datetime.now(UTC) + timedelta(milliseconds=250)
    )
    assert await store.fire_due_waits() == set()  # not due yet
    assert await store.get_run(task.run_id) == run
    assert await claim(store, graph) is None

    fired: set[tuple[str, str]] = await assert_eventually(store.fire_due_waits, timeout=5, what="the timer to be due")

    assert fired == {(queue, graph.key)}
    assert await store.fire_due_waits() == set()
    resumed = await claimed(store, graph)
    assert resumed.lease_expires_at - LONG_LEASE >= outcome.wake_at
    assert outcomes(resumed) == [(0, WAIT_TIMER, "", "hash-timer-0", b"null", "")]


async def test_a_timer_of_no_length_resumes_at_once(store: Store) -> None:
    graph, task = await started(store)

    outcome = await store.suspend_task(task.key, timer(timedelta(0)))

    assert outcome.resumed
    assert outcomes(await claimed(store, graph)) == [(0, WAIT_TIMER, "", "hash-timer-0", b"null", "")]


async def test_a_signal_wait_times_out(store: Store) -> None:
    queue = unique("q")
    graph, task = await started(store, queue=queue)
    outcome = await store.suspend_task(task.key, signal_wait(0, timeout=timedelta(milliseconds=50)))
    assert outcome.wake_at is not None

    fired: set[tuple[str, str]] = await assert_eventually(
        store.fire_due_waits, timeout=5, what="the signal wait to time out"
    )

    assert fired == {(queue, graph.key)}
    (record,) = (await claimed(store, graph)).activities
    assert (record.seq, record.kind, record.name, record.result) == (0, WAIT_SIGNAL, "approve", None)
    assert record.error is not None
    assert (record.error.type, record.error.non_retryable) == (SIGNAL_TIMEOUT_ERROR, True)


async def test_a_signal_that_arrives_in_time_ends_the_timeout(store: Store) -> None:
    graph, task = await started(store)
    outcome = await store.suspend_task(task.key, signal_wait(0, timeout=timedelta(milliseconds=50)))
    wake_at = outcome.wake_at
    assert wake_at is not None
    delivered = await store.signal_run(signal(task.run_id, b"1"))
    assert delivered is not None
    assert delivered.delivered
    await assert_eventually(lambda: datetime.now(UTC) > wake_at, timeout=5, what="the timeout to pass")

    assert await store.fire_due_waits() == set()
    assert [(a.seq, a.result, a.error) for a in (await claimed(store, graph)).activities] == [(0, b"1", None)]


async def test_concurrent_sweeps_end_each_wait_once(store: Store, database: Database) -> None:
    graphs: list[GraphSpec] = []
    due_at = datetime.now(UTC)
    for _ in range(30):
        graph, task = await started(store)
        outcome = await store.suspend_task(task.key, timer(timedelta(milliseconds=100)))
        assert outcome.wake_at is not None
        graphs.append(graph)
        due_at = max(due_at, outcome.wake_at)
    await assert_eventually(lambda: datetime.now(UTC) > due_at, timeout=5, what="every timer to be due")

    async with database.open() as other:
        mine, theirs = await asyncio.gather(store.fire_due_waits(), other.fire_due_waits())

    assert mine.isdisjoint(theirs)
    assert mine | theirs == {(g.nodes["a"].task_queue, g.key) for g in graphs}
    for graph in graphs:
        resumed = await claimed(store, graph)
        assert [(a.seq, a.result) for a in resumed.activities] == [(0, b"null")]


@pytest.mark.parametrize("backing_off", [False, True], ids=["queued", "backing-off"])
async def test_cancelling_a_step_nobody_runs_ends_the_run_now(store: Store, backing_off: bool) -> None:
    graph = chain_graph("a", queue=unique("q"))
    run_id = await start_run(store, graph)
    if backing_off:
        task = await claimed(store, graph)
        await retry_task(store, task.key, failure=Failure("boom"), delay=timedelta(seconds=30))

    outcome = await store.cancel_run(run_id, failure=STOP)

    assert outcome is not None
    assert outcome.ready is None
    run = await store.get_run(run_id)
    assert run == outcome.run
    assert (run.status, run.failure, run.cancel_requested) == (RunStatus.CANCELLED, STOP, True)
    assert run.completed_at is not None
    assert await store.get_task(run_id) is None
    assert await claim(store, graph) is None


async def test_cancelling_a_waiting_step_records_the_cancellation_as_its_outcome(store: Store) -> None:
    queue = unique("q")
    graph, task = await started(store, queue=queue)
    await store.suspend_task(task.key, signal_wait(2))

    outcome = await store.cancel_run(task.run_id, failure=STOP)

    assert outcome is not None
    assert outcome.ready == (queue, graph.key)
    assert (outcome.run.status, outcome.run.waiting, outcome.run.cancel_requested) == (RunStatus.RUNNING, None, True)
    resumed = await claimed(store, graph)
    assert resumed.cancel_requested
    assert outcomes(resumed) == [(2, WAIT_SIGNAL, "approve", "hash-signal-2", None, CANCELLED_ERROR)]
    assert resumed.activities[0].error == STOP


async def test_cancelling_a_running_step_only_marks_the_run(store: Store) -> None:
    graph, task = await started(store)
    _, before = await store.extend_lease(task.key, lease=LONG_LEASE)
    assert before is False

    outcome = await store.cancel_run(task.run_id, failure=STOP)

    assert outcome is not None
    assert (outcome.ready, outcome.run.status, outcome.run.cancel_requested) == (None, RunStatus.RUNNING, True)
    expires, cancelled = await store.extend_lease(task.key, lease=LONG_LEASE)
    assert cancelled is True
    assert expires > task.lease_expires_at
    current = await store.get_task(task.run_id)
    assert current is not None
    assert (current.cancel_requested, current.lease_owner) == (True, "w1")
    await store.release_task(task.key)
    again = await claimed(store, graph)
    assert (again.attempt, again.cancel_requested) == (task.attempt + 1, True)


async def test_a_step_of_a_cancelled_run_that_suspends_resumes_with_the_cancellation(store: Store) -> None:
    queue = unique("q")
    graph, task = await started(store, queue=queue)
    await store.cancel_run(task.run_id, failure=STOP)

    outcome = await store.suspend_task(task.key, timer(timedelta(hours=1)))

    assert (outcome.resumed, outcome.ready) == (True, (queue, graph.key))
    resumed = await claimed(store, graph)
    assert outcomes(resumed) == [(0, WAIT_TIMER, "", "hash-timer-0", None, CANCELLED_ERROR)]
    assert resumed.activities[0].error == STOP


async def test_fail_run_cancelled_ends_the_run_cancelled(store: Store) -> None:
    graph, task = await started(store)
    await store.cancel_run(task.run_id, failure=STOP)

    await fail_run(store, task.key, failure=STOP, cancelled=True)

    run = await store.get_run(task.run_id)
    assert run is not None
    assert (run.status, run.failure) == (RunStatus.CANCELLED, STOP)
    assert await store.get_task(task.run_id) is None
    assert await claim(store, graph) is None


async def test_cancel_run_on_an_ended_or_unknown_run(store: Store) -> None:
    assert await store.cancel_run(unique("run"), failure=STOP) is None
    _, task = await started(store)
    await fail_run(store, task.key, failure=Failure("no", type="ValueError"))
    ended = await store.get_run(task.run_id)

    outcome = await store.cancel_run(task.run_id, failure=STOP)

    assert outcome is not None
    assert (outcome.run, outcome.ready) == (ended, None)
    assert outcome.run.cancel_requested is False


async def test_a_second_cancel_lets_the_woken_step_wind_up(store: Store) -> None:
    graph, task = await started(store)
    await store.suspend_task(task.key, signal_wait(0))
    first = await store.cancel_run(task.run_id, failure=STOP)
    assert first is not None
    assert first.ready is not None

    again = await store.cancel_run(task.run_id, failure=STOP)

    assert again is not None
    assert (again.run.status, again.ready) == (RunStatus.RUNNING, None)  # not ended over the node's head
    resumed = await claimed(store, graph)
    assert resumed.cancel_requested
    assert outcomes(resumed)[0][5] == CANCELLED_ERROR
