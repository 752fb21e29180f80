"""Retention: PruneRuns and the schedule delete ended runs and the blobs nothing references."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import cmo
from cmo.errors import RpcError, RunNotFoundError
from cmo_server.app import CmoServer
from cmo_server.config import RetentionConfig, ServerConfig
from tests.integration.test_runs import serving, unique

MiB = 1024 * 1024


def blob_files(config: ServerConfig) -> set[str]:
    root = Path(config.blob_root)
    return {p.name for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")} if root.exists() else set()


def big_graph(graph_id: str) -> cmo.Graph[dict[str, Any]]:
    """One step whose state carries a field above the inline threshold: it goes to the blob store."""
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(graph_id)

    @graph.node(entry=True)
    async def fill(state, ctx):
        return cmo.NodeResult({"blob": state["seed"] * (MiB // len(state["seed"]))}, next=cmo.END)

    return graph


def held_graph(graph_id: str, release: asyncio.Event) -> cmo.Graph[dict[str, Any]]:
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(graph_id)

    @graph.node(entry=True)
    async def hold(state, ctx):
        await release.wait()
        return cmo.NodeResult(state, next=cmo.END)

    return graph


@pytest.fixture
def config(server_config: ServerConfig) -> ServerConfig:
    return replace(server_config, retention=RetentionConfig(blob_gc_grace=timedelta(seconds=1)))


async def test_prune_deletes_ended_runs_and_their_blobs_but_not_running_ones(config: ServerConfig):
    graph = big_graph(unique("big"))
    release = asyncio.Event()
    running_graph = held_graph(unique("held"), release)
    async with (
        CmoServer.running(config) as server,
        await cmo.Client.connect(f"127.0.0.1:{server.port}") as client,
        serving(client, [graph, running_graph]),
    ):
        old = [await client.start(graph, {"seed": f"old-{i}-"}) for i in range(3)]
        for handle in old:
            await handle.result(timeout=20)
        blobs_of_old = blob_files(config)
        assert len(blobs_of_old) == 3  # one 1 MiB field per run
        running = await client.start(running_graph, {})
        await asyncio.sleep(1.5)  # the old runs (and their blobs) are now older than 1 s
        keep = await client.start(graph, {"seed": "new-"})
        await keep.result(timeout=20)

        dry = await client.prune_runs(older_than=timedelta(seconds=1), dry_run=True)
        assert (dry.runs, dry.blobs, dry.dry_run) == (3, 0, True)  # blobs: still referenced before the prune
        assert blob_files(config) >= blobs_of_old

        report = await client.prune_runs(older_than=timedelta(seconds=1))
        assert (report.runs, report.blobs) == (3, 3)
        for handle in old:
            with pytest.raises(RunNotFoundError):
                await handle.describe()
        assert not blobs_of_old & blob_files(config)
        assert (await keep.result(timeout=5))["blob"].startswith("new-")  # its blob is still there
        assert (await running.describe()).status is cmo.RunStatus.RUNNING  # not ended: never pruned
        release.set()
        await running.result(timeout=10)

        again = await client.prune_runs(older_than=timedelta(seconds=1))
        assert (again.runs, again.blobs) == (0, 0)


async def test_prune_by_status_keeps_the_others(config: ServerConfig):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("mixed"))

    @graph.node(entry=True)
    async def decide(state, ctx):
        if state["fail"]:
            raise cmo.errors.ApplicationError("no", non_retryable=True)
        return cmo.NodeResult(state, next=cmo.END)

    async with CmoServer.running(config) as server, await cmo.Client.connect(f"127.0.0.1:{server.port}") as client:
        async with serving(client, [graph]):
            done = await client.start(graph, {"fail": False})
            failed = await client.start(graph, {"fail": True})
            await client.wait(done.run_id, timeout=20)
            await client.wait(failed.run_id, timeout=20)
        report = await client.prune_runs(older_than=timedelta(milliseconds=1), statuses=[cmo.RunStatus.FAILED])
        assert report.runs == 1
        assert (await done.describe()).status is cmo.RunStatus.COMPLETED
        with pytest.raises(RunNotFoundError):
            await failed.describe()


async def test_prune_rejects_a_bad_request(config: ServerConfig):
    async with CmoServer.running(config) as server, await cmo.Client.connect(f"127.0.0.1:{server.port}") as client:
        with pytest.raises(RpcError, match="older_than: must be more than zero"):
            await client.prune_runs(older_than=timedelta(0))
        with pytest.raises(RpcError, match=r"statuses\[0\]: RUNNING runs have not ended"):
            await client.prune_runs(older_than=timedelta(days=1), statuses=[cmo.RunStatus.RUNNING])


async def test_the_schedule_prunes_old_runs_by_itself(config: ServerConfig):
    scheduled = replace(
        config,
        retention=replace(
            config.retention, older_than=timedelta(seconds=1), prune_interval=timedelta(milliseconds=300)
        ),
    )
    graph = big_graph(unique("aging"))
    async with CmoServer.running(scheduled) as server, await cmo.Client.connect(f"127.0.0.1:{server.port}") as client:
        async with serving(client, [graph]):
            handle = await client.start(graph, {"seed": "aging-"})
            await handle.result(timeout=20)
        assert blob_files(scheduled)
        deadline = time.monotonic() + 15
        while True:
            try:
                await handle.describe()
            except RunNotFoundError:
                break
            assert time.monotonic() < deadline, "the schedule never pruned the run"
            await asyncio.sleep(0.1)
        deadline = time.monotonic() + 15
        while blob_files(scheduled):
            assert time.monotonic() < deadline, "the schedule never collected the blob"
            await asyncio.sleep(0.1)
