"""Kill -9 an agent: the registry marks it UNAVAILABLE within its lease on every replica, a watcher
sees it, discovery stops returning it, and the invocation it left unanswered goes to another agent."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

import pytest

import cmo
from cmo.registry import AgentEvent, AgentStatus
from tests.e2e.graphs import CAPABILITY_INVOKER, Markers
from tests.e2e.test_invoke_specialist_crash import a2a_env
from tests.support.processes import Database, Processes, WorkerProcess
from tests.support.waiting import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.postgres]

LEASE = 3.0


async def start_specialist(
    processes: Processes, redis_server: str, registry: str, instance: str, markers: Path, *, hold: bool
) -> WorkerProcess:
    argv = [
        sys.executable, "-m", "tests.e2e.specialist_main", "--redis", redis_server, "--marker-dir", str(markers),
        "--tenant", "default", "--project", "default", "--registry", registry, "--instance", instance,
        "--lease", str(LEASE), *(["--hold"] if hold else []),
    ]  # fmt: skip
    return await processes.start_program(argv, role=instance)


async def watch_until_unavailable(client: cmo.Client, agent_id: str, seen: list[AgentEvent]) -> float:
    """Watch on this client's server until `agent_id` is reported UNAVAILABLE; when that was."""
    async for event in client.registry.watch(skip_current=True):
        seen.append(event)
        if (
            event.agent is not None
            and event.agent.agent_id == agent_id
            and event.agent.status is AgentStatus.UNAVAILABLE
        ):
            return time.monotonic()
    raise AssertionError("the watch ended")


@pytest.mark.parametrize("database", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
async def test_an_agent_killed_mid_invocation_is_unavailable_everywhere_and_its_request_goes_elsewhere(
    processes: Processes, markers: Markers, database: Database, redis_server: str, tmp_path: Path
) -> None:
    specialist_markers = tmp_path / "specialist"
    specialist_markers.mkdir()
    a = await processes.start_server(database, env=a2a_env(redis_server))
    b = await processes.start_server(database, env=a2a_env(redis_server))
    await processes.start_worker(a.address, graph="capability-invoker", marker_dir=markers.root, redis=redis_server)
    victim = await start_specialist(processes, redis_server, a.address, "healer-victim", specialist_markers, hold=True)
    run_id = uuid.uuid4().hex
    async with await cmo.Client.connect(a.address) as on_a, await cmo.Client.connect(b.address) as on_b:
        await assert_eventually(
            lambda: _healthy(on_b, "healer-victim"), timeout=20, what="the victim HEALTHY, seen from replica B"
        )
        graph: cmo.Graph[dict[str, object]] = cmo.Graph(CAPABILITY_INVOKER, version=1)
        await on_a.start(graph, {"selector": "#buy"}, run_id=run_id)
        started = await assert_eventually(
            lambda: list(specialist_markers.glob("*.started")), timeout=30, what="the victim took the request"
        )
        assert len(started) == 1
        # A second agent with the capability comes up; the victim holds the request and dies.
        await start_specialist(processes, redis_server, b.address, "healer-standby", specialist_markers, hold=False)
        seen: list[AgentEvent] = []
        watching = asyncio.create_task(watch_until_unavailable(on_b, "healer-victim", seen))
        await asyncio.sleep(0.5)  # the watch is open
        last_beat = (await on_a.registry.get("healer-victim")).last_heartbeat_at
        killed_at = time.monotonic()
        await victim.kill()

        unavailable_at = await asyncio.wait_for(watching, timeout=LEASE + 10)
        # Within its lease (from its last beat) and the sweep's second, not at the invocation's timeout.
        assert unavailable_at - killed_at <= LEASE + 2.5
        for client in (on_a, on_b):
            agent = await client.registry.get("healer-victim")
            assert agent.status is AgentStatus.UNAVAILABLE
            assert agent.status_reason == "lease lapsed"
            assert agent.last_heartbeat_at == last_beat
            assert [x.agent_id for x in await client.registry.discover("healing.selector")] == ["healer-standby"]

        run = await on_a.wait(run_id, timeout=60)
        assert run.status is cmo.RunStatus.COMPLETED, run
        effects = [json.loads(p.read_text()) for p in specialist_markers.glob("*.effect")]
        assert len(effects) == 1  # the standby answered; the victim never did
        assert run.result["proposal"] == {"by": effects[0]["consumer"]}
        history = await on_a.get_history(run_id)
        discovered = [a for step in history for a in step.activities if a.kind == "a2a.discover"]
        assert [d.result["agent_id"] for d in discovered] == ["healer-victim", "healer-standby"]


async def _healthy(client: cmo.Client, agent_id: str) -> bool:
    return (await client.registry.get(agent_id)).status is AgentStatus.HEALTHY
