"""Several servers on one Postgres: work enqueued on one reaches workers polling another at once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import cmo
from cmo_server.app import CmoServer
from cmo_server.config import BlobConfig, EngineLimits, ServerConfig, StoreConfig
from tests.integration.test_runs import serving, unique
from tests.support.postgres import create_database, drop_database

pytestmark = pytest.mark.postgres

# Sweeps only every 30 s: anything faster than that was pushed.
SLOW_SWEEPS = EngineLimits(
    task_lease=timedelta(seconds=5),
    sweep_interval=timedelta(seconds=30),
    fallback_sweep_interval=timedelta(seconds=30),
)


@pytest.fixture
def database(postgres_server: str) -> Iterator[str]:
    url = create_database(postgres_server)
    try:
        yield url
    finally:
        drop_database(postgres_server, url)


@contextlib.asynccontextmanager
async def replica(database: str, tmp_path: Path) -> AsyncIterator[CmoServer]:
    config = ServerConfig(
        listen="127.0.0.1:0",
        store=StoreConfig(database_url=database, pool_size=2),
        blob=BlobConfig(dir=str(tmp_path / "blobs")),
        limits=SLOW_SWEEPS,
    )
    async with CmoServer.running(config) as server:
        yield server


async def connect(server: CmoServer) -> cmo.Client:
    return await cmo.Client.connect(f"127.0.0.1:{server.port}")


def one_step(graph_id: str) -> cmo.Graph[dict[str, Any]]:
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(graph_id)

    @graph.node(entry=True)
    async def only(state, ctx):
        return cmo.NodeResult({**state, "done": True}, next=cmo.END)

    return graph


async def test_a_worker_polling_one_replica_gets_a_run_started_on_another_at_once(database: str, tmp_path: Path):
    graph = one_step(unique("pushed"))
    async with (
        replica(database, tmp_path) as a,
        replica(database, tmp_path) as b,
        await connect(a) as on_a,
        await connect(b) as on_b,
    ):
        await on_b.register_graph(graph)
        async with serving(on_a, [graph], poll_wait=20.0, eager=False):
            await asyncio.sleep(0.5)  # the worker's polls are parked on A
            started = time.monotonic()
            handles = [await on_b.start(graph, {"n": i}) for i in range(5)]
            results = [await h.result(timeout=10) for h in handles]
            elapsed = time.monotonic() - started
    assert results == [{"n": i, "done": True} for i in range(5)]
    assert elapsed < 5, f"took {elapsed:.1f}s: the runs waited for a sweep instead of a push"


async def test_wait_run_on_one_replica_wakes_when_the_run_ends_on_another(database: str, tmp_path: Path):
    graph = one_step(unique("ended"))
    async with (
        replica(database, tmp_path) as a,
        replica(database, tmp_path) as b,
        await connect(a) as on_a,
        await connect(b) as on_b,
    ):
        await on_a.register_graph(graph)
        handle = await on_a.start(graph, {})
        waiting = asyncio.create_task(on_b.wait(handle.run_id, timeout=20))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        async with serving(on_a, [graph]):
            info = await waiting
        elapsed = time.monotonic() - started
    assert info.status is cmo.RunStatus.COMPLETED
    assert elapsed < 3, f"WaitRun on B took {elapsed:.1f}s to see the run end on A"


async def test_a_timer_set_through_a_replica_that_stops_fires_on_time_on_another(database: str, tmp_path: Path):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("nap"))

    @graph.node(entry=True)
    async def nap(state, ctx):
        await ctx.sleep(1.5)
        return cmo.NodeResult({"woke": True}, next=cmo.END)

    async with replica(database, tmp_path) as a, await connect(a) as on_a:
        async with replica(database, tmp_path) as b, await connect(b) as on_b, serving(on_b, [graph]):
            handle = await on_b.start(graph, {})
            deadline = time.monotonic() + 10
            while (await handle.describe()).waiting is None:
                assert time.monotonic() < deadline, "the run never waited"
                await asyncio.sleep(0.05)
        # B is gone, with its local timer; A heard of the wait when B set it.
        due = (await on_a.get_run(handle.run_id)).waiting
        assert due is not None
        assert due.until is not None
        async with serving(on_a, [graph]):
            info = await on_a.wait(handle.run_id, timeout=20)
    assert info.status is cmo.RunStatus.COMPLETED
    assert info.completed_at is not None
    late = (info.completed_at - due.until).total_seconds()
    assert late < 3, f"the timer fired {late:.1f}s late: it waited for a sweep"


def test_slow_sweeps_really_are_slow():
    # The tests above prove pushes only if sweeps alone could not have been that fast.
    assert SLOW_SWEEPS.sweep_interval >= timedelta(seconds=30)
    assert replace(SLOW_SWEEPS).fallback_sweep_interval >= timedelta(seconds=30)
