"""TerminateRun: the run ends at once; the worker running its step is refused the checkpoint."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import cmo
from cmo.errors import RunFailedError, RunNotFoundError
from tests.integration.test_runs import Counter, counting_graph, serving, unique


async def test_terminating_a_run_mid_step_ends_it_and_its_step_is_not_checkpointed(client: cmo.Client):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("endless"))
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @graph.node(entry=True, edges={"more": "spin"})
    async def spin(state, ctx):
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()  # the lease is gone: the worker stops the node
            raise
        return cmo.NodeResult(state, next="more")

    async with serving(client, [graph]):
        handle = await client.start(graph, {})
        await asyncio.wait_for(started.wait(), 10)
        ended = await handle.terminate(reason="runaway")
        assert ended.status is cmo.RunStatus.TERMINATED
        with pytest.raises(RunFailedError, match="terminated: Terminated at step 0"):
            await handle.result(timeout=10)
        await asyncio.wait_for(cancelled.wait(), 10)  # within a heartbeat of the 1 s lease
    info = await handle.describe()
    assert info.failure is not None
    assert (info.failure.message, info.failure.type) == ("runaway", "Terminated")
    assert await handle.history() == []


async def test_terminating_an_ended_run_changes_nothing(client: cmo.Client):
    graph = counting_graph(unique("done"), steps=2)
    async with serving(client, [graph]):
        handle = await client.start(graph, Counter())
        await handle.result(timeout=20)
    before = await handle.describe()
    assert await handle.terminate(reason="too late") == before
    with pytest.raises(RunNotFoundError):
        await client.terminate("no-such-run")
