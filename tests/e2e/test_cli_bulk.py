"""`cmoctl` on many runs at once, piped and at a terminal: grep finds each run whole, bulk actions
ask first and say what they did to each run, and progress shows on a terminal only."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import pty
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

import cmo
from cmo.testing import RunHistory
from tests.e2e.graphs import APPROVAL, COUNTER, Markers, counter_input
from tests.e2e.test_cli import _env, cmoctl
from tests.support.processes import Database, Processes, ServerProcess
from tests.support.waiting import assert_eventually

pytestmark = pytest.mark.e2e


def at_a_terminal(address: str, *args: str, typed: str = "") -> tuple[subprocess.CompletedProcess[str], str]:
    """cmoctl with stdin and stderr on a terminal (`typed` typed on it) and stdout piped.

    Returns the process (its stdout) and everything it wrote to the terminal.
    """
    command = [sys.executable, "-m", "cmo.cli", "--address", address, *args]
    terminal, its_end = pty.openpty()
    shown = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(terminal, 4096)
            except OSError:  # EIO: every end of the terminal's other side is closed
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    try:
        with subprocess.Popen(
            command, stdin=its_end, stdout=subprocess.PIPE, stderr=its_end, text=True, env={**_env(), "TERM": "xterm"}
        ) as process:
            os.close(its_end)
            reader.start()
            os.write(terminal, typed.encode())
            stdout, _ = process.communicate(timeout=60)
        reader.join(timeout=10)
    finally:
        os.close(terminal)
    return subprocess.CompletedProcess(command, process.returncode, stdout, ""), shown.decode(errors="replace")


async def waiting_runs(client: cmo.Client, count: int) -> list[str]:
    run_ids = [uuid.uuid4().hex for _ in range(count)]
    for run_id in run_ids:
        await client.start(APPROVAL, {"signal": True}, run_id=run_id)

    async def all_waiting() -> bool:
        return None not in [(await client.get_run(r)).waiting for r in run_ids]

    await assert_eventually(all_waiting, timeout=20, what="the runs waiting")
    return run_ids


@pytest.fixture
async def server(processes: Processes, markers: Markers, tmp_path: Path) -> ServerProcess:
    server = await processes.start_server(Database(sqlite_path=tmp_path / "cmo.db"))
    await processes.start_worker(server.address, graph="approval", marker_dir=markers.root)
    return server


async def test_piped_runs_list_keeps_each_run_on_one_line_for_grep(server: ServerProcess):
    async with await cmo.Client.connect(server.address) as client:
        waiting = await waiting_runs(client, 3)
        done: dict[str, object] = await client.execute(APPROVAL, {"signal": False}, timeout=30)
        assert done["decision"] is None

    command = f"{sys.executable} -m cmo.cli --address {server.address} runs list | grep WAITING"
    env = {**_env(), "COLUMNS": "40"}  # narrower than a row: a terminal's table would fold its cells
    grepped = await asyncio.to_thread(subprocess.run, command, shell=True, capture_output=True, text=True, env=env)
    assert grepped.returncode == 0, grepped.stderr
    lines = grepped.stdout.splitlines()
    assert sorted(line.split()[0] for line in lines) == sorted(waiting)
    assert all("WAITING (signal approve)" in line and "e2e-approval@1" in line for line in lines)


async def test_bulk_cancel_asks_first_then_says_what_it_did_to_each_run(server: ServerProcess):
    async with await cmo.Client.connect(server.address) as client:
        run_ids = await waiting_runs(client, 3)
        picked = ("runs", "cancel", "--status", "waiting", "--graph", APPROVAL)

        refused = await asyncio.to_thread(cmoctl, server.address, *picked)  # a script, without --yes
        assert refused.returncode == 1
        assert f"would cancel 3 runs of graph {APPROVAL} (waiting 3)" in refused.stdout
        assert "--yes" in refused.stderr
        declined, _ = await asyncio.to_thread(at_a_terminal, server.address, *picked, typed="n\n")
        assert declined.returncode == 1
        assert [(await client.get_run(r)).status for r in run_ids] == [cmo.RunStatus.WAITING] * 3

        both = await asyncio.to_thread(cmoctl, server.address, "runs", "cancel", run_ids[0], "--status", "waiting")
        assert both.returncode == 2
        assert "not both" in both.stderr

        agreed, terminal = await asyncio.to_thread(at_a_terminal, server.address, *picked, typed="y\n")
        assert agreed.returncode == 0, terminal
        assert "Cancel them?" in agreed.stdout
        assert "cancelling" in terminal  # the progress bar, on the terminal only
        for run_id in run_ids:
            [line] = [line for line in agreed.stdout.splitlines() if run_id in line]  # one line a run
            assert f"run {run_id} was WAITING for signal 'approve'" in line
            assert line.endswith("(the step wakes with the cancellation and the run ends CANCELLED)")
        for run_id in run_ids:
            assert (await client.wait(run_id, timeout=30)).status is cmo.RunStatus.CANCELLED

        nothing = await asyncio.to_thread(cmoctl, server.address, *picked, "--yes")
        assert nothing.returncode == 0
        assert nothing.stdout == "no run matches\n"


async def test_bulk_signal_and_terminate_piped_print_only_what_they_did(server: ServerProcess):
    async with await cmo.Client.connect(server.address) as client:
        approved = await waiting_runs(client, 2)
        sent = await asyncio.to_thread(
            cmoctl, server.address, "runs", "signal", "approve", "--status", "waiting", "--payload", "1", "--yes"
        )
        assert sent.returncode == 0, sent.stderr
        assert sent.stderr == ""  # piped: no progress
        assert sorted(sent.stdout.splitlines()[1:]) == sorted(f"run {r}: signal 'approve' delivered" for r in approved)
        for run_id in approved:
            assert (await client.wait(run_id, timeout=30)).result["decision"] == 1

        ended = await waiting_runs(client, 2)
        terminated = await asyncio.to_thread(cmoctl, server.address, "runs", "terminate", "--graph", APPROVAL, "--yes")
        assert terminated.returncode == 0, terminated.stderr
        assert terminated.stdout.splitlines()[0] == f"would terminate 2 runs of graph {APPROVAL} (waiting 2)"
        for run_id in ended:
            assert f"run {run_id} TERMINATED at step 0 (gate)" in terminated.stdout
            assert (await client.get_run(run_id)).status is cmo.RunStatus.TERMINATED

        usage = await asyncio.to_thread(cmoctl, server.address, "runs", "signal", "approve")
        assert usage.returncode == 2
        assert "RUN_ID NAME" in usage.stderr


async def test_export_shows_progress_on_a_terminal_and_nothing_more_when_piped(
    processes: Processes, markers: Markers, tmp_path: Path
):
    server = await processes.start_server(Database(sqlite_path=tmp_path / "cmo.db"))
    await processes.start_worker(server.address, graph="counter", marker_dir=markers.root)
    async with await cmo.Client.connect(server.address) as client:
        counted: dict[str, object] = await client.execute(COUNTER, counter_input(2), timeout=30)
        assert counted["count"] == 2
        [info] = [r async for r in client.list_runs()]

    exported, terminal = await asyncio.to_thread(at_a_terminal, server.address, "runs", "export", info.run_id)
    assert exported.returncode == 0, terminal
    assert f"exporting run {info.run_id}" in terminal
    assert RunHistory.from_json(json.loads(exported.stdout)).run.run_id == info.run_id
    piped = await asyncio.to_thread(functools.partial(cmoctl, server.address, "runs", "export", info.run_id))
    assert piped.returncode == 0
    assert piped.stderr == ""
    assert piped.stdout == exported.stdout
