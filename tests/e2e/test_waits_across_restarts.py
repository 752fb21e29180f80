"""Waits are durable: a run waiting for a signal or a timer rides out kill -9 of server and worker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

import cmo
from tests.e2e.graphs import APPROVAL, Markers
from tests.support.processes import Database, Processes
from tests.support.waiting import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TIMER_SECONDS = 2.0
TIMER_BOUND_SECONDS = 1.5
"""How late the timer may complete after it was due and a worker was there to run the step: the
wait sweep (0.2 s), the claim and the replayed step, with room for a loaded machine. (Restarting
the processes can take longer than the timer on a loaded machine: that time is not the server's.)"""


async def waiting_for(client: cmo.Client, run_id: str, kind: str) -> cmo.RunInfo:
    async def check() -> cmo.RunInfo | None:
        info = await client.get_run(run_id)
        return info if info.waiting is not None and info.waiting.kind == kind else None

    return await assert_eventually(check, timeout=20, what=f"run {run_id} waiting for a {kind}")


async def test_a_run_waiting_for_a_signal_survives_server_and_worker_restarts(
    processes: Processes, markers: Markers, database: Database
) -> None:
    server = await processes.start_server(database)
    worker = await processes.start_worker(server.address, graph="approval", marker_dir=markers.root)
    run_id = uuid.uuid4().hex
    async with await cmo.Client.connect(server.address) as client:
        await client.start(APPROVAL, {"signal": True}, run_id=run_id)
        await waiting_for(client, run_id, "signal")
        await worker.kill()
        server = await processes.restart_server(server)
        info = await waiting_for(client, run_id, "signal")
        assert info.status is cmo.RunStatus.WAITING
        worker = await processes.start_worker(server.address, graph="approval", marker_dir=markers.root)
        assert await client.signal(run_id, "approve", {"by": "ops"}) is True
        done = await client.wait(run_id, timeout=30)
    assert done.status is cmo.RunStatus.COMPLETED
    assert done.result["decision"] == {"by": "ops"}
    assert done.result["by"] == worker.worker_id  # the new worker replayed the step to the signal
    assert len(markers.all("started")) == 2  # the first attempt, and the one after the signal


async def test_a_two_second_timer_fires_in_bounded_time_after_server_and_worker_restarts(
    processes: Processes, markers: Markers, database: Database
) -> None:
    server = await processes.start_server(database)
    worker = await processes.start_worker(server.address, graph="approval", marker_dir=markers.root)
    run_id = uuid.uuid4().hex
    async with await cmo.Client.connect(server.address) as client:
        await client.start(APPROVAL, {"nap": TIMER_SECONDS}, run_id=run_id)
        info = await waiting_for(client, run_id, "timer")
        assert info.waiting is not None
        assert info.waiting.until is not None
        due = info.waiting.until
        await worker.kill()
        server = await processes.restart_server(server)
        await processes.start_worker(server.address, graph="approval", marker_dir=markers.root)
        serving = datetime.now(UTC)  # the new worker polls from here on
        done = await client.wait(run_id, timeout=30)
    assert done.status is cmo.RunStatus.COMPLETED
    assert done.completed_at is not None
    assert done.completed_at >= due
    late = (done.completed_at - max(due, serving)).total_seconds()
    assert late <= TIMER_BOUND_SECONDS, f"the timer completed {late:.3f}s after it was due and a worker was up"
