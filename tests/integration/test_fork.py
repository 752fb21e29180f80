"""Fork: a new run from any step of another, with an edited state; the parent is untouched."""

from __future__ import annotations

from typing import Any

import pytest

import cmo
from cmo.errors import RpcError, RunNotFoundError
from tests.integration.test_runs import Counter, counting_graph, serving, unique


async def test_a_fork_of_a_finished_run_goes_on_from_the_step_with_the_edited_state(client: cmo.Client):
    graph = counting_graph(unique("forkable"), steps=4)
    async with serving(client, [graph]):
        parent = await client.start(graph, Counter())
        assert (await parent.result(timeout=20)).n == 4
        parent_before = await client.export_history(parent.run_id)

        fork = await client.fork(
            parent.run_id, from_step=1, state=Counter(n=100, trail=("edited",)), state_type=Counter
        )
        result = await fork.result(timeout=20)

    assert result == Counter(102, ("edited", "s2", "s3"))
    info = await fork.describe()
    assert (info.parent_run_id, info.forked_from_step, info.step_count) == (parent.run_id, 1, 4)
    steps = await fork.history()
    shared = parent_before.steps[:2]
    assert [(s.node_id, s.state_hash) for s in steps[:1]] == [(shared[0].node_id, shared[0].state_hash)]
    assert steps[1].node_id == "s1"
    assert steps[1].state == {"n": 100, "trail": ["edited"]}  # the edited checkpoint
    assert [s.node_id for s in steps[2:]] == ["s2", "s3"]
    assert await client.export_history(parent.run_id) == parent_before  # the parent is untouched


async def test_a_fork_without_edits_repeats_the_rest_of_the_run(client: cmo.Client):
    graph = counting_graph(unique("again"), steps=3)
    async with serving(client, [graph]):
        parent = await client.start(graph, Counter())
        await parent.result(timeout=20)
        fork = await client.fork(parent.run_id, from_step=0, new_run_id=unique("fork"), state_type=Counter)
        # Idempotent on the id.
        again: cmo.RunHandle[Any] = await client.fork(parent.run_id, from_step=0, new_run_id=fork.run_id)
        assert again.run_id == fork.run_id
        assert (await fork.result(timeout=20)).n == 3
    parent_steps, fork_steps = await parent.history(), await fork.history()
    assert [s.state_hash for s in fork_steps] == [s.state_hash for s in parent_steps]


async def test_bad_forks_are_refused_with_the_field(client: cmo.Client):
    graph = counting_graph(unique("nofork"), steps=2)
    async with serving(client, [graph]):
        parent = await client.start(graph, Counter())
        await parent.result(timeout=20)
    with pytest.raises(RunNotFoundError):
        await client.fork("no-such-run", from_step=0)
    with pytest.raises(RpcError, match=r"from_step: .* has no step 5"):
        await client.fork(parent.run_id, from_step=5)
    with pytest.raises(RpcError, match="from_step: step 1 finished the run"):
        await client.fork(parent.run_id, from_step=1)
    with pytest.raises(RpcError, match="state: must be a JSON object"):
        await client.fork(parent.run_id, from_step=0, state=[1, 2])
    assert [r.run_id async for r in client.list_runs(graph_id=graph.graph_id)] == [parent.run_id]
