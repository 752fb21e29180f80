"""A graph invoking a specialist survives kill -9 of its worker while the specialist works, and
kill -9 of the server before the reply arrives: the run completes, the specialist handled it once."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest

import cmo
from tests.e2e.graphs import INVOKER, Markers
from tests.e2e.specialist_main import KEY_ID, SECRET
from tests.support.processes import Database, Processes
from tests.support.waiting import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.redis]


def a2a_env(redis_server: str) -> dict[str, str]:
    return {"REDIS_URL": redis_server, "CMO_A2A_KEYS": f"{KEY_ID}={SECRET.decode()}"}


async def start_specialist(processes: Processes, redis_server: str, markers: Path, release: Path) -> None:
    argv = [
        sys.executable, "-m", "tests.e2e.specialist_main", "--redis", redis_server,
        "--marker-dir", str(markers), "--hold-until", str(release), "--tenant", "default", "--project", "default",
    ]  # fmt: skip
    await processes.start_program(argv, role="specialist")


def effects(markers: Path) -> list[dict[str, str]]:
    return [json.loads(p.read_text()) for p in sorted(markers.glob("*.effect"))]


@pytest.mark.parametrize("victim", ["worker", "server"])
async def test_a_run_waiting_for_a_specialist_survives_kill_9_of_its_worker_or_its_server(
    processes: Processes, markers: Markers, database: Database, redis_server: str, tmp_path: Path, victim: str
) -> None:
    specialist_markers = tmp_path / "specialist"
    specialist_markers.mkdir()
    release = tmp_path / "release"
    server = await processes.start_server(database, env=a2a_env(redis_server))
    worker = await processes.start_worker(server.address, graph="invoker", marker_dir=markers.root, redis=redis_server)
    await start_specialist(processes, redis_server, specialist_markers, release)
    run_id = uuid.uuid4().hex
    async with await cmo.Client.connect(server.address) as client:
        graph: cmo.Graph[dict[str, object]] = cmo.Graph(INVOKER, version=1)
        await client.start(graph, {"selector": "#buy"}, run_id=run_id)
        started = await assert_eventually(
            lambda: list(specialist_markers.glob("*.started")), timeout=30, what="the specialist started"
        )
        assert len(started) == 1
        if victim == "worker":
            await worker.kill()  # the step waits durably: no worker holds it while the specialist works
            await processes.start_worker(server.address, graph="invoker", marker_dir=markers.root, redis=redis_server)
            release.touch()
        else:
            await server.kill()
            release.touch()  # the reply waits in Redis for a server to consume it
            await assert_eventually(lambda: effects(specialist_markers), timeout=30, what="the specialist answered")
            server = await processes.restart_server(server)
    async with await cmo.Client.connect(server.address) as client:
        run = await client.wait(run_id, timeout=60)
        assert run.status is cmo.RunStatus.COMPLETED, run
        assert run.result["proposal"]["by"].startswith("healer-")
        [effect] = effects(specialist_markers)  # handled once
        assert run.result["proposal"] == {"by": effect["consumer"]}
