"""The server killed (kill -9) under load and restarted on the same port and database.

Workers retry UNAVAILABLE (their polls, heartbeats and checkpoints), clients retry their starts and
waits; once the server is back every run completes with each step checkpointed exactly once.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

import cmo
from tests.e2e.graphs import COUNTER, Markers, check_counter_history, counter_input
from tests.support.processes import Database, Processes
from tests.support.waiting import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STEPS = 6
STEP_SECONDS = 0.05
RUNS_BEFORE = 40
"""Runs started before the crash."""
RUNS_DURING = 10
"""Runs a client starts while the server is down: their StartRun is retried until it is back."""


async def test_server_killed_mid_load_restarts_and_every_run_completes_each_step_once(
    processes: Processes, markers: Markers, database: Database
) -> None:
    server = await processes.start_server(database)
    await processes.start_workers(2, server.address, graph="counter", marker_dir=markers.root, concurrency=10)
    initial = counter_input(STEPS, sleep=STEP_SECONDS)
    before = [uuid.uuid4().hex for _ in range(RUNS_BEFORE)]
    during = [uuid.uuid4().hex for _ in range(RUNS_DURING)]

    async with await cmo.Client.connect(server.address) as client:

        async def start_and_wait(run_id: str) -> cmo.RunInfo:
            await client.start(COUNTER, initial, run_id=run_id)
            return await client.wait(run_id, timeout=90)

        await asyncio.gather(*(client.start(COUNTER, initial, run_id=r) for r in before))
        async with asyncio.TaskGroup() as group:
            # Waits in flight across the crash: each must ride it out.
            waits = [group.create_task(client.wait(r, timeout=90)) for r in before]
            total = RUNS_BEFORE * STEPS
            await assert_eventually(
                lambda: markers.count("finished") >= total // 4, timeout=30, what="a quarter of the steps run"
            )
            assert markers.count("finished") < total * 3 // 4, "the load was over before the crash"
            await server.kill()
            waits += [group.create_task(start_and_wait(r)) for r in during]
            server = await processes.restart_server(server)

        runs = [w.result() for w in waits]
        assert [r.run_id for r in runs] == before + during
        not_completed = [(r.run_id, r.status.name) for r in runs if r.status is not cmo.RunStatus.COMPLETED]
        assert not not_completed
        for run in runs:
            assert run.step_count == STEPS
            assert run.result["count"] == STEPS
            check_counter_history(await client.get_history(run.run_id), STEPS)
