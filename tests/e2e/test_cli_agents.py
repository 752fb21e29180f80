"""`cmoctl agents` as an operator runs it: every worker with its queues, last poll and lease; a
specialist found by capability; a deregistration."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import cmo
from cmo.registry import AgentStatus, TopicRole
from tests.e2e.graphs import Markers
from tests.e2e.test_cli import cmoctl
from tests.support.processes import Database, Processes
from tests.support.waiting import assert_eventually

pytestmark = pytest.mark.e2e


async def test_cmoctl_lists_shows_discovers_and_deregisters_agents(
    processes: Processes, markers: Markers, tmp_path: Path
) -> None:
    server = await processes.start_server(Database(sqlite_path=tmp_path / "cmo.db"))
    worker = await processes.start_worker(server.address, graph="counter", marker_dir=markers.root)
    async with await cmo.Client.connect(server.address) as client:
        healer = await client.registry.register(
            "healer-1", kind="specialist", name="healer", version="1.2.0", capabilities=["healing.selector"],
            topics=[("qa.default.default.specialists.healer-1.invoke", TopicRole.SUBSCRIBE)],
            lease=timedelta(minutes=5), status=AgentStatus.HEALTHY,
        )  # fmt: skip

        def polled() -> dict[str, Any]:
            listed = cmoctl(server.address, "agents", "list", "--kind", "worker", "--json")
            assert listed.returncode == 0, listed.stderr
            [row] = [json.loads(line) for line in listed.stdout.splitlines()]
            assert isinstance(row, dict)
            assert row["last_poll_at"] is not None
            return row

        row = await assert_eventually(lambda: asyncio.to_thread(polled), timeout=20, what="the worker's last poll")
        assert row["agent_id"] == worker.worker_id
        assert row["status"] == "HEALTHY"
        assert "queue:default" in row["capabilities"]
        assert any(c.startswith("graph:e2e-counter@") for c in row["capabilities"])
        assert row["lease_s"] == 60.0

        table = await asyncio.to_thread(cmoctl, server.address, "agents", "list")
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        # Piped output keeps an agent on one line, so grep finds it whole.
        [worker_line] = [line for line in lines if worker.worker_id in line]
        assert "worker" in worker_line
        assert "HEALTHY" in worker_line
        assert "queue:default" in worker_line
        [healer_line] = [line for line in lines if "healer-1" in line]
        assert "healing.selector" in healer_line

        found = await asyncio.to_thread(
            cmoctl, server.address, "agents", "discover", "healing.selector", "--version", ">=1.2,<2", "--json"
        )
        assert [json.loads(line)["agent_id"] for line in found.stdout.splitlines()] == ["healer-1"]
        none = await asyncio.to_thread(
            cmoctl, server.address, "agents", "discover", "healing.selector", "--version", ">=2"
        )
        assert none.returncode == 0
        assert "healer-1" not in none.stdout

        shown = await asyncio.to_thread(cmoctl, server.address, "agents", "show", "healer-1")
        assert shown.returncode == 0, shown.stderr
        assert "qa.default.default.specialists.healer-1.invoke (subscribe)" in shown.stdout
        assert (
            json.loads(
                (await asyncio.to_thread(cmoctl, server.address, "agents", "show", "healer-1", "--json")).stdout
            )["version"]
            == "1.2.0"
        )

        left = await asyncio.to_thread(
            cmoctl, server.address, "agents", "deregister", "healer-1", "--reason", "retired"
        )
        assert left.returncode == 0, left.stderr
        assert left.stdout.strip() == "healer-1: UNAVAILABLE (retired)"
        assert (await client.registry.get("healer-1")).status is AgentStatus.UNAVAILABLE
        with pytest.raises(cmo.errors.RpcError):
            await client.registry.heartbeat("healer-1", healer.lease_id)

        missing = await asyncio.to_thread(cmoctl, server.address, "agents", "show", "nobody")
        assert missing.returncode == 1
        assert "agent 'nobody' not found" in missing.stderr
        assert "Traceback" not in missing.stderr
        other = await asyncio.to_thread(cmoctl, server.address, "--tenant", "acme", "agents", "list", "--json")
        assert other.returncode == 0
        assert other.stdout == ""
