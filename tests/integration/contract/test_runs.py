"""Runs: creation, reading, listing and their checkpoints."""

from __future__ import annotations

import pytest

from cmo_server.domain import NewRun, RunStatus
from cmo_server.errors import InvalidArgument
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


async def test_create_run_stores_a_pending_run_at_its_entry_node(store: Store) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))
    await store.register_graph(graph)
    new = NewRun(
        NS, unique("run"), graph.graph_id, graph.version, state(41), 2**62 + 5, "a", graph.nodes["a"].task_queue
    )

    run, created = await store.create_run(new)

    assert created is True
    assert (run.run_id, run.graph_id, run.graph_version) == (new.run_id, graph.graph_id, graph.version)
    assert (run.status, run.input, run.seed) == (RunStatus.PENDING, state(41), 2**62 + 5)
    assert (run.step_count, run.current_node) == (0, "a")
    assert run.created_at.tzinfo is not None
    assert run.updated_at == run.created_at
    assert (run.completed_at, run.result, run.failure) == (None, None, None)
    assert await store.get_run(NS, new.run_id) == run


async def test_create_run_is_idempotent_on_run_id(store: Store) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))
    run_id = await start_run(store, graph, input=state(1))
    first = await store.get_run(NS, run_id)

    again, created = await store.create_run(
        NewRun(NS, run_id, graph.graph_id, graph.version, state(2), 7, "a", graph.nodes["a"].task_queue)
    )

    assert created is False
    assert again == first  # the stored run, not the new arguments
    task = await claim(store, graph)
    assert task is not None
    assert task.state == state(1)
    assert await claim(store, graph) is None  # one entry task, not two


async def test_an_unknown_run_is_none(store: Store) -> None:
    assert await store.get_run(NS, unique("run")) is None
    assert await store.get_task(NS, unique("run")) is None
    assert await store.get_steps(NS, unique("run")) == []


async def test_get_run_follows_the_current_step(store: Store) -> None:
    graph = chain_graph("a", "b", "c", queue=unique("q"))
    run_id = await start_run(store, graph)

    task = await claim(store, graph)
    assert task is not None
    run = await store.get_run(NS, run_id)
    assert run is not None
    assert (run.status, run.step_count, run.current_node) == (RunStatus.RUNNING, 0, "a")

    await store.complete_step(commit_for(task, graph))
    run = await store.get_run(NS, run_id)
    assert run is not None
    assert (run.status, run.step_count, run.current_node) == (RunStatus.RUNNING, 1, "b")

    task = await claim(store, graph)
    assert task is not None
    await store.complete_step(commit_for(task, graph))
    run = await store.get_run(NS, run_id)
    assert run is not None
    assert (run.step_count, run.current_node) == (2, "c")


async def test_list_runs_is_newest_first_in_pages(store: Store) -> None:
    graph = chain_graph("a", queue=unique("q"))
    created = [await start_run(store, graph) for _ in range(7)]

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        runs, token = await store.list_runs(NS, limit=3, page_token=token)
        pages += 1
        seen.extend(r.run_id for r in runs)
        assert len(runs) <= 3
        if not token:
            break

    assert seen == list(reversed(created))
    assert pages == 3
    runs, token = await store.list_runs(NS, limit=7)
    assert [r.run_id for r in runs] == list(reversed(created))
    assert token == ""


async def test_list_runs_pages_are_stable_when_runs_are_added(store: Store) -> None:
    graph = chain_graph("a", queue=unique("q"))
    old = [await start_run(store, graph) for _ in range(4)]
    first, token = await store.list_runs(NS, limit=2)
    await start_run(store, graph)  # newer than every listed run: not on the following pages

    rest, token = await store.list_runs(NS, limit=10, page_token=token)

    assert [r.run_id for r in first + rest] == list(reversed(old))
    assert token == ""


async def test_list_runs_filters_by_graph_and_status(store: Store) -> None:
    queue = unique("q")
    one = chain_graph("a", queue=queue)
    two = chain_graph("a", "b", queue=queue)
    ones = [await start_run(store, one) for _ in range(3)]
    twos = [await start_run(store, two) for _ in range(2)]
    done = await claim(store, one)  # the oldest run of `one`
    assert done is not None
    assert done.run_id == ones[0]
    await store.complete_step(commit_for(done, one))

    runs, _ = await store.list_runs(NS, graph_id=one.graph_id)
    assert [r.run_id for r in runs] == list(reversed(ones))
    runs, _ = await store.list_runs(NS, graph_id=two.graph_id)
    assert [r.run_id for r in runs] == list(reversed(twos))
    runs, _ = await store.list_runs(NS, status=RunStatus.COMPLETED)
    assert [r.run_id for r in runs] == [done.run_id]
    runs, _ = await store.list_runs(NS, graph_id=one.graph_id, status=RunStatus.PENDING)
    assert [r.run_id for r in runs] == list(reversed(ones[1:]))
    runs, _ = await store.list_runs(NS, graph_id=two.graph_id, status=RunStatus.COMPLETED)
    assert runs == []
    runs, token = await store.list_runs(NS, graph_id=one.graph_id, status=RunStatus.PENDING, limit=1)
    more, _ = await store.list_runs(NS, graph_id=one.graph_id, status=RunStatus.PENDING, limit=1, page_token=token)
    assert [r.run_id for r in runs + more] == list(reversed(ones[1:]))


async def test_list_runs_refuses_a_foreign_page_token(store: Store) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await store.list_runs(NS, page_token="not a token!")
    assert caught.value.field == "page_token"


async def test_get_steps_pages_through_the_checkpoints(store: Store) -> None:
    graph = chain_graph("a", "b", "c", "d", queue=unique("q"))
    run_id = await start_run(store, graph)
    commits = []
    while (task := await claim(store, graph)) is not None:
        commits.append(commit_for(task, graph))
        await store.complete_step(commits[-1])

    steps = await store.get_steps(NS, run_id)
    assert [s.step_index for s in steps] == [0, 1, 2, 3]
    assert [s.node_id for s in steps] == ["a", "b", "c", "d"]
    assert [s.next_node for s in steps] == ["b", "c", "d", "__end__"]
    for step, commit in zip(steps, commits, strict=True):
        assert (step.run_id, step.attempt, step.state, step.state_hash) == (
            run_id,
            1,
            commit.state,
            commit.state_hash,
        )
        assert (step.output, step.next_key, step.started_at) == (commit.output, commit.next_key, commit.started_at)
        assert step.logical_time <= step.finished_at
    assert [s.step_index for s in await store.get_steps(NS, run_id, limit=2)] == [0, 1]
    assert [s.step_index for s in await store.get_steps(NS, run_id, after=1, limit=2)] == [2, 3]
    assert [s.step_index for s in await store.get_steps(NS, run_id, after=2)] == [3]
    assert await store.get_steps(NS, run_id, after=3) == []


async def test_each_step_keeps_the_logical_time_it_was_scheduled_at(store: Store) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))
    run_id = await start_run(store, graph)
    first = await claim(store, graph, lease=LONG_LEASE)
    assert first is not None
    await store.complete_step(commit_for(first, graph))
    second = await claim(store, graph)
    assert second is not None
    await store.complete_step(commit_for(second, graph))

    steps = await store.get_steps(NS, run_id)
    run = await store.get_run(NS, run_id)
    assert run is not None
    assert steps[0].logical_time == first.logical_time == run.created_at
    assert steps[1].logical_time == second.logical_time == steps[0].finished_at


async def test_list_runs_by_id_prefix_is_in_byte_order_and_pages(store: Store) -> None:
    # Ids a locale's collation would interleave ("a-b" beside "ab"); by bytes, a prefix is one range.
    base = unique("s")
    graph = chain_graph("a", queue=unique("q"))
    suffixes = ["ab", "a_b", "a-b", "A", "a", "b", "aé", "a\U0001f600"]
    for suffix in suffixes:
        await start_run(store, graph, run_id=f"{base}.{suffix}")
    await start_run(store, graph, run_id=f"{base}x.a")  # shares the prefix `base` but not `base.`

    async def ids(prefix: str, **filters: object) -> list[str]:
        runs, _ = await store.list_runs(NS, id_prefix=f"{base}.{prefix}", **filters)  # type: ignore[arg-type]
        return [r.run_id.removeprefix(f"{base}.") for r in runs]

    by_bytes = sorted(suffixes, key=lambda s: s.encode())
    assert await ids("") == by_bytes
    assert await ids("a") == [s for s in by_bytes if s.startswith("a")]
    assert await ids("a-") == ["a-b"]
    assert await ids("c") == []
    assert await ids("a", status=RunStatus.COMPLETED) == []
    assert await ids("a", graph_id=graph.graph_id) == [s for s in by_bytes if s.startswith("a")]

    pages, token = [], ""
    while True:
        runs, token = await store.list_runs(NS, id_prefix=f"{base}.a", limit=2, page_token=token)
        pages.append([r.run_id.removeprefix(f"{base}.") for r in runs])
        if not token:
            break
    assert [s for page in pages for s in page] == [s for s in by_bytes if s.startswith("a")]
    assert all(len(page) == 2 for page in pages[:-1])
