"""Many concurrent runs across several worker processes: each step runs and is checkpointed once."""

from __future__ import annotations

import asyncio
import collections
import uuid

import pytest

import cmo
from tests.e2e.graphs import COUNTER, Markers, check_counter_history, counter_input
from tests.support.processes import Database, Processes

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RUNS = 200
WORKERS = 4
STEPS = 5


async def test_200_concurrent_runs_on_4_worker_processes_run_each_step_exactly_once(
    processes: Processes, markers: Markers, database: Database
) -> None:
    # Nothing fails here, so a lease long enough never to lapse under load: any second attempt
    # of a step would then be a duplicate dispatch, not a recovery.
    server = await processes.start_server(database, lease_seconds=30)
    workers = await processes.start_workers(
        WORKERS, server.address, graph="counter", marker_dir=markers.root, concurrency=25
    )
    run_ids = [uuid.uuid4().hex for _ in range(RUNS)]
    async with await cmo.Client.connect(server.address) as client:
        await asyncio.gather(*(client.start(COUNTER, counter_input(STEPS), run_id=r) for r in run_ids))
        runs = await asyncio.gather(*(client.wait(r, timeout=60) for r in run_ids))
        assert [r.status for r in runs] == [cmo.RunStatus.COMPLETED] * RUNS
        assert all(r.result["count"] == STEPS for r in runs)
        histories = await asyncio.gather(*(client.get_history(r) for r in run_ids))

    for history in histories:
        check_counter_history(history, STEPS)
        assert [s.attempt for s in history] == [1] * STEPS
    started = markers.all("started")
    executions = collections.Counter((m["run_id"], m["step"]) for m in started)
    assert len(executions) == RUNS * STEPS
    assert executions.most_common(1)[0][1] == 1, f"a step ran twice: {executions.most_common(1)}"
    assert {m["pid"] for m in started} == {w.pid for w in workers}, "some worker process took no task"
