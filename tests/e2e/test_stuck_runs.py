"""A worker process killed (kill -9) in the middle of a step, as an operator sees it: `cmoctl runs
show` says the step is leased to that worker until its lease ends, then that the lease lapsed and
no worker polls the queue; a worker started again takes the step and the run completes."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

import cmo
from tests.e2e.graphs import COUNTER, Markers, counter_input
from tests.e2e.test_cli import run_cmoctl
from tests.support.processes import Database, Processes
from tests.support.waiting import assert_eventually

pytestmark = pytest.mark.e2e

HELD = 1


async def shown(address: str, run_id: str) -> str:
    result = await asyncio.to_thread(run_cmoctl, "--address", address, "runs", "show", run_id)
    assert result.returncode == 0, result.stderr
    return " ".join(result.stdout.split())


async def test_a_killed_worker_is_named_until_its_lease_lapses_and_then_no_poller_is(
    processes: Processes, markers: Markers, database: Database
) -> None:
    server = await processes.start_server(database, lease_seconds=3)
    [worker] = await processes.start_workers(1, server.address, graph="counter", marker_dir=markers.root)
    run_id = uuid.uuid4().hex
    async with await cmo.Client.connect(server.address) as client:
        handle: cmo.RunHandle[dict[str, Any]] = await client.start(
            COUNTER, counter_input(3, hold=[(HELD, 1)]), run_id=run_id
        )
        await assert_eventually(lambda: markers.read(run_id, HELD, 1, "started"), what="step 1 started")
        await worker.kill()

        leased = await client.get_run(run_id)
        assert leased.progress is not None
        assert leased.progress.reason == "leased"
        assert leased.progress.worker_id == worker.worker_id
        assert f"is leased to worker {worker.worker_id} until in " in await shown(server.address, run_id)

        async def lapsed() -> cmo.RunProgress | None:
            info = await client.get_run(run_id)
            return info.progress if info.progress is not None and info.progress.reason == "no_poller" else None

        progress = await assert_eventually(lapsed, timeout=15, what="the lease lapsed")
        assert f"worker {worker.worker_id}'s lease lapsed" in progress.summary
        assert "no worker polls queue 'default' for e2e-counter@1" in await shown(server.address, run_id)

        await processes.start_workers(1, server.address, graph="counter", marker_dir=markers.root)
        result = await handle.result(timeout=30)
        assert result["count"] == 3
        assert (await handle.describe()).progress is None
