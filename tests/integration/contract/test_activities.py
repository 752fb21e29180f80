"""The activity log: records fenced by attempt, first writer wins, handed to the next attempt."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from cmo_server.domain import ActivityRecord, Failure, TaskKey
from cmo_server.errors import StaleLease
from cmo_server.store import Store
from tests.integration.contract.helpers import SHORT_LEASE, chain_graph, claim, commit_for, start_run, unique
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
            TaskKey(second.run_id, 5, second.attempt, second.worker_id), record(0, second.attempt)
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

    (step,) = await store.get_steps(run_id)
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
    assert await store.get_steps(run_id) == []
