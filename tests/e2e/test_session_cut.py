"""Worker sessions cut by the network mid-load: every connection reset, over and over.

The workers reach the server through a proxy that resets every connection through it (an RST both
ways, as a dropped link or a restarted load balancer would). Each cut ends every worker's session
with calls in flight: polls, heartbeats, checkpoints. The workers open new sessions and re-send;
every run completes with each step checkpointed exactly once.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

import cmo
from tests.e2e.graphs import COUNTER, Markers, check_counter_history, counter_input
from tests.support.processes import Database, Processes
from tests.support.proxy import cutting_proxy
from tests.support.waiting import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STEPS = 20
STEP_SECONDS = 0.1
RUNS = 30
CUTS = 6
WORKERS = 2


async def test_sessions_cut_again_and_again_lose_nothing_and_checkpoint_each_step_once(
    processes: Processes, markers: Markers, database: Database
) -> None:
    server = await processes.start_server(database)
    async with cutting_proxy(server.address) as proxy, await cmo.Client.connect(server.address) as client:
        await processes.start_workers(WORKERS, proxy.address, graph="counter", marker_dir=markers.root, concurrency=10)
        initial = counter_input(STEPS, sleep=STEP_SECONDS)
        run_ids = [uuid.uuid4().hex for _ in range(RUNS)]
        await asyncio.gather(*(client.start(COUNTER, initial, run_id=r) for r in run_ids))

        cut = 0
        for _ in range(CUTS):
            # Cut only while steps are running, so that calls are in flight on every session.
            await assert_eventually(lambda: markers.count("started") > markers.count("finished"), what="a step running")
            cut += proxy.cut()
            await asyncio.sleep(0.25)
        assert cut >= CUTS * WORKERS, f"only {cut} connections were cut"
        assert markers.count("finished") < RUNS * STEPS, "the load was over before the last cut"

        runs = await asyncio.gather(*(client.wait(r, timeout=90) for r in run_ids))
        assert [(r.run_id, r.status) for r in runs] == [(r, cmo.RunStatus.COMPLETED) for r in run_ids]
        for run in runs:
            assert run.step_count == STEPS
            assert run.result["count"] == STEPS
            check_counter_history(await client.get_history(run.run_id), STEPS)
        assert proxy.connections > WORKERS, "the workers never reconnected"
