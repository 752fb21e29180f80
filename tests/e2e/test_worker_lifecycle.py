"""A worker process as someone starts and stops it: before its server (it waits, saying so), then
serving (it says on which queues), then Ctrl-C (it drains) and a second Ctrl-C (it stops at once)."""

from __future__ import annotations

import signal
import socket
import sys
import uuid
from pathlib import Path

import pytest

import cmo
from examples.triage import Ticket, triage
from tests.e2e.graphs import COUNTER, Markers, counter_input
from tests.support.processes import REPO_ROOT, Database, Processes
from tests.support.waiting import assert_eventually

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_worker_started_before_its_server_waits_for_it_then_serves_and_drains(
    processes: Processes, tmp_path: Path
):
    address = f"127.0.0.1:{free_port()}"
    example = [sys.executable, str(REPO_ROOT / "examples" / "triage.py"), "--address", address, "worker"]
    worker = processes.launch([*example, "--concurrency", "2"])

    def logged(text: str) -> bool:
        worker.raise_if_exited(f"waiting for {text!r}")
        return text in worker.log()

    await assert_eventually(
        lambda: logged(f"no CMO server at {address} yet: connection refused; waiting for it"),
        timeout=30,
        what="the worker saying it waits",
    )
    await processes.start_server(Database(sqlite_path=tmp_path / "cmo.db"), listen=address)
    await assert_eventually(
        lambda: logged("started: triage@1 on task queue default, 2 slots"), timeout=30, what="the worker started"
    )
    async with await cmo.Client.connect(address) as client:
        ticket = await client.execute(triage, Ticket("My invoice is wrong"), timeout=30)
    assert ticket.log[-1] == "closed"

    worker.popen.send_signal(signal.SIGINT)
    assert await worker.wait_exit(timeout=30) == 0
    log = worker.log()
    assert "draining: no new tasks; 0 in flight" in log
    assert log.rstrip().endswith("stopped")


async def test_a_second_ctrl_c_hands_the_running_task_back_at_once(
    processes: Processes, markers: Markers, tmp_path: Path
):
    server = await processes.start_server(Database(sqlite_path=tmp_path / "cmo.db"))
    first = await processes.start_worker(server.address, graph="counter", marker_dir=markers.root)
    run_id = uuid.uuid4().hex
    async with await cmo.Client.connect(server.address) as client:
        await client.start(COUNTER, counter_input(1, hold=[(0, 1)]), run_id=run_id)  # held until released
        await assert_eventually(
            lambda: markers.read(run_id, 0, 1, "started") is not None, timeout=20, what="the step running"
        )

        first.popen.send_signal(signal.SIGINT)
        await assert_eventually(
            lambda: "draining: no new tasks; 1 in flight get 2s to finish" in first.log(), timeout=10, what="draining"
        )
        first.popen.send_signal(signal.SIGINT)
        assert await first.wait_exit(timeout=10) == 0
        log = first.log()
        assert "stopping at once: handing 1 task(s) back" in log
        assert "grace period over" not in log

        await processes.start_worker(server.address, graph="counter", marker_dir=markers.root)
        done = await client.wait(run_id, timeout=30)  # handed back, so at once another worker's
        assert done.status is cmo.RunStatus.COMPLETED
        assert [s.attempt for s in await client.get_history(run_id)] == [2]
