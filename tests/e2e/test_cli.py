"""The command-line tools as a user runs them: cmo-server migrate, cmoctl runs list / show."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import cmo
from tests.e2e.graphs import COUNTER, Markers, counter_input
from tests.support.processes import Database, Processes

pytestmark = pytest.mark.e2e


def cmoctl(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cmo.cli", "--address", address, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})


async def test_cmoctl_lists_runs_and_shows_the_step_table(processes: Processes, markers: Markers, tmp_path: Path):
    server = await processes.start_server(Database(sqlite_path=tmp_path / "cmo.db"))
    await processes.start_worker(server.address, graph="counter", marker_dir=markers.root)
    run_id = uuid.uuid4().hex
    async with await cmo.Client.connect(server.address) as client:
        await client.start(COUNTER, counter_input(3), run_id=run_id)
        await client.wait(run_id, timeout=30)
        steps = await client.get_history(run_id)

    listed = await asyncio.to_thread(cmoctl, server.address, "runs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["run_id"], r["status"], r["steps"]) for r in rows] == [(run_id, "COMPLETED", 3)]

    shown = await asyncio.to_thread(cmoctl, server.address, "runs", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    for column in ("step", "node", "attempt", "duration ms", "state hash", "next"):
        assert column in shown.stdout
    for step in steps:
        assert step.state_hash[:12] in shown.stdout
    assert "END" in shown.stdout

    as_json = json.loads((await asyncio.to_thread(cmoctl, server.address, "runs", "show", run_id, "--json")).stdout)
    assert [s["state_hash"] for s in as_json["steps"]] == [s.state_hash for s in steps]

    missing = await asyncio.to_thread(cmoctl, server.address, "runs", "show", "no-such-run")
    assert missing.returncode == 1
    assert "no-such-run" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_cmo_server_migrate_creates_a_migrated_sqlite_file(tmp_path: Path):
    db = tmp_path / "fresh.db"
    command = [sys.executable, "-m", "cmo_server.cli", "migrate", "--db", str(db)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "is migrated" in result.stdout
    with contextlib.closing(sqlite3.connect(db)) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"runs", "tasks", "steps", "graphs", "schema_migrations"} <= tables
