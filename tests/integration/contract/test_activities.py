"""The activity log: records fenced by attempt, first writer wins, handed to the next attempt.

A newer attempt's record replaces an older attempt's failed one at the same seq: a node retry runs a
failed activity again and its new outcome is what the step keeps.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from cmo_server.domain import (
    WAIT_SIGNAL,
    ActivityRecord,
    AttemptEnd,
    FailDecision,
    Failure,
    GraphSpec,
    NewSignal,
    Task,
    TaskKey,
    WaitRequest,
)
from cmo_server.errors import StaleLease
from cmo_server.store import Store
from tests.integration.contract.helpers import (
    NS,
    SHORT_LEASE,
    chain_graph,
    claim,
    commit_for,
    retry_task,
    start_run,
    unique,
)
from tests.support.waiting import assert_eventually


def record(seq: int, attempt: int, *, result: bytes | None = b'{"ok":1}', name: str = "charge") -> ActivityRecord:
    error = None if result is not None else Failure("card declined", type="Declined")
    return ActivityRecord(seq, "call", name, f"hash-{seq}", result, error, attempt)


async def test_a_record_is_stored_once_and_the_first_writer_wins(store: Store) -> None:
    graph = chain_graph("a", queue=unique("q"))
    await start_run(store, graph)
    task = await claim(store, graph)
    assert task is not None

    first = await store.record_activity(task.key, record(0, task.attempt, result=b'{"v":1}'))
    again = await store.record_activity(task.key, record(0, task.attempt, result=b'{"v":2}'))
    assert first.result == again.result == b'{"v":1}'
    assert first.recorded_at is not None
    failed = await store.record_activity(task.key, record(1, task.attempt, result=None))
    assert failed.result is None
    assert failed.error == Failure("card declined", type="Declined")


async def test_a_stale_attempt_cannot_record(store: Store) -> None:
    graph = chain_graph("a", queue=unique("q"))
    await start_run(store, graph)
    first = await claim(store, graph, lease=SHORT_LEASE)
    assert first is not None
    second = await assert_eventually(lambda: claim(store, graph), timeout=5, what="the lease to lapse")

    with pytest.raises(StaleLease):
        await store.record_activity(first.key, record(0, first.attempt))
    with pytest.raises(StaleLease):  # nor a step that is not the task's current one
        await store.record_activity(
            TaskKey(NS, second.run_id, 5, second.attempt, second.worker_id), record(0, second.attempt)
        )
    stored = await store.record_activity(second.key, record(0, second.attempt))
    assert stored.attempt == second.attempt


async def test_the_next_attempt_gets_the_records_in_seq_order(store: Store) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))
    await start_run(store, graph)
    first = await claim(store, graph, lease=SHORT_LEASE)
    assert first is not None
    assert first.activities == ()
    # Recorded out of order, as concurrent activities finish.
    for seq in (2, 0, 1):
        await store.record_activity(first.key, record(seq, first.attempt, name=f"act{seq}"))

    retry = await assert_eventually(lambda: claim(store, graph), timeout=5, what="the lease to lapse")
    assert retry.attempt == first.attempt + 1
    assert [(a.seq, a.name, a.attempt) for a in retry.activities] == [(0, "act0", 1), (1, "act1", 1), (2, "act2", 1)]

    # The next step starts with none.
    outcome = await store.complete_step(commit_for(retry, graph, eager_worker="w"))
    assert outcome.next_task is not None
    assert outcome.next_task.activities == ()


async def test_concurrent_records_of_one_seq_agree(store: Store) -> None:
    graph = chain_graph("a", queue=unique("q"))
    await start_run(store, graph)
    task = await claim(store, graph)
    assert task is not None
    results = await asyncio.gather(
        *(store.record_activity(task.key, record(0, task.attempt, result=f'{{"w":{i}}}'.encode())) for i in range(8))
    )
    assert len({r.result for r in results}) == 1


async def test_records_riding_on_a_checkpoint_are_stored_with_it_and_the_first_record_wins(store: Store) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))
    run_id = await start_run(store, graph)
    task = await claim(store, graph)
    assert task is not None
    await store.record_activity(task.key, record(0, task.attempt, result=b'{"first":true}'))
    riding = (record(0, task.attempt, result=b'{"second":true}'), record(1, task.attempt, name="ship"))
    outcome = await store.complete_step(replace(commit_for(task, graph), activities=riding))
    assert not outcome.duplicate

    (step,) = await store.get_steps(NS, run_id)
    assert [(a.seq, a.name, a.result) for a in step.activities] == [
        (0, "charge", b'{"first":true}'),
        (1, "ship", b'{"ok":1}'),
    ]


async def test_records_riding_on_a_stale_checkpoint_are_not_stored(store: Store) -> None:
    graph = chain_graph("a", queue=unique("q"))
    run_id = await start_run(store, graph)
    first = await claim(store, graph, lease=SHORT_LEASE)
    assert first is not None
    second = await assert_eventually(lambda: claim(store, graph), timeout=5, what="the lease to lapse")
    stale = replace(commit_for(first, graph), activities=(record(0, first.attempt, result=b'{"stale":1}'),))
    with pytest.raises(StaleLease):
        await store.complete_step(stale)
    # Had the stale record been stored, the first writer would win over the current attempt's.
    mine = await store.record_activity(second.key, record(0, second.attempt, result=b'{"mine":1}'))
    assert (mine.result, mine.attempt) == (b'{"mine":1}', second.attempt)
    assert await store.get_steps(NS, run_id) == []


async def retried(store: Store, graph: GraphSpec, task: Task) -> Task:
    """Fail `task`'s attempt (as a node that raised) and claim the step's next attempt."""
    await retry_task(store, task.key, failure=Failure("node raised", type="RuntimeError"), delay=timedelta(0))
    again = await claim(store, graph)
    assert again is not None
    assert again.attempt == task.attempt + 1
    return again


async def failed_at_seq_0_then_retried(store: Store) -> tuple[GraphSpec, Task]:
    """A run whose first attempt recorded a failure at seq 0, and its step's second attempt."""
    graph = chain_graph("a", queue=unique("q"))
    await start_run(store, graph)
    first = await claim(store, graph)
    assert first is not None
    await store.record_activity(first.key, record(0, first.attempt, result=None))
    return graph, await retried(store, graph, first)


async def test_a_newer_attempt_replaces_an_older_attempts_failed_record_but_never_a_success(store: Store) -> None:
    graph = chain_graph("a", queue=unique("q"))
    await start_run(store, graph)
    first = await claim(store, graph)
    assert first is not None
    await store.record_activity(first.key, record(0, first.attempt, result=b'{"reserved":1}', name="reserve"))
    await store.record_activity(first.key, record(1, first.attempt, result=None))

    second = await retried(store, graph, first)
    assert [(a.seq, a.attempt, a.error is None) for a in second.activities] == [(0, 1, True), (1, 1, False)]
    kept = await store.record_activity(second.key, record(0, second.attempt, result=b'{"reserved":2}'))
    assert (kept.name, kept.result, kept.attempt) == ("reserve", b'{"reserved":1}', first.attempt)
    ran_again = await store.record_activity(second.key, record(1, second.attempt, result=b'{"charged":1}'))
    assert (ran_again.result, ran_again.error, ran_again.attempt) == (b'{"charged":1}', None, second.attempt)

    # Within one attempt the first record wins, a failure too.
    await store.record_activity(second.key, record(2, second.attempt, result=None))
    same = await store.record_activity(second.key, record(2, second.attempt, result=b'{"late":1}'))
    assert (same.result, same.error) == (None, Failure("card declined", type="Declined"))

    third = await retried(store, graph, second)
    assert [(a.seq, a.attempt, a.error is None) for a in third.activities] == [
        (0, 1, True),
        (1, 2, True),
        (2, 2, False),
    ]


async def test_a_record_riding_on_a_checkpoint_replaces_an_older_attempts_failure(store: Store) -> None:
    graph = chain_graph("a", queue=unique("q"))
    run_id = await start_run(store, graph)
    first = await claim(store, graph)
    assert first is not None
    await store.record_activity(first.key, record(0, first.attempt, result=b'{"reserved":1}', name="reserve"))
    await store.record_activity(first.key, record(1, first.attempt, result=None))
    second = await retried(store, graph, first)

    riding = (record(0, second.attempt, result=b'{"reserved":2}'), record(1, second.attempt, result=b'{"ok":2}'))
    await store.complete_step(replace(commit_for(second, graph), activities=riding))

    (step,) = await store.get_steps(NS, run_id)
    assert [(a.seq, a.name, a.result, a.attempt) for a in step.activities] == [
        (0, "reserve", b'{"reserved":1}', first.attempt),
        (1, "charge", b'{"ok":2}', second.attempt),
    ]


async def test_a_record_riding_on_a_failed_attempt_replaces_an_older_attempts_failure(store: Store) -> None:
    graph, second = await failed_at_seq_0_then_retried(store)

    # The activity ran again and failed again; its record rides on the attempt's FailTask.
    failed_again = replace(record(0, second.attempt, result=None), error=Failure("card expired", type="Expired"))
    failure = Failure("node raised", type="RuntimeError")
    await store.fail_task(
        second.key, decide=lambda _: FailDecision(AttemptEnd.RETRY, failure, timedelta(0)), activities=(failed_again,)
    )

    third = await claim(store, graph)
    assert third is not None
    assert [(a.seq, a.error, a.attempt) for a in third.activities] == [
        (0, Failure("card expired", type="Expired"), second.attempt)
    ]


async def test_a_wait_where_an_older_attempt_failed_waits_and_records_its_outcome_there(store: Store) -> None:
    graph, second = await failed_at_seq_0_then_retried(store)

    # The new attempt took another path: a wait at the seq of the failed activity.
    outcome = await store.suspend_task(second.key, WaitRequest(0, WAIT_SIGNAL, "approve", None, "hash-wait"))
    assert not outcome.resumed  # the older failure is not this wait's outcome
    delivered = await store.signal_run(NewSignal(NS, second.run_id, "approve", b'"yes"', ""))
    assert delivered is not None
    assert delivered.delivered

    resumed = await claim(store, graph)
    assert resumed is not None
    assert [(a.seq, a.kind, a.result, a.attempt) for a in resumed.activities] == [
        (0, WAIT_SIGNAL, b'"yes"', second.attempt)
    ]
