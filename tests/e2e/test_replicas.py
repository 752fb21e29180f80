"""Several server processes on one Postgres, and Postgres itself restarted, under load.

Clients and workers are given every replica's address ("ipv4:A,B"): their calls are spread over
the replicas and skip one that is down. Each counter run's history proves each step was
checkpointed exactly once, built on the one before.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

import cmo
from tests.e2e.graphs import COUNTER, Markers, check_counter_history, counter_input
from tests.support.postgres import Cluster, create_database, drop_database, throwaway_cluster
from tests.support.processes import Database, Processes
from tests.support.waiting import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres]

STEPS = 3
STEP_SECONDS = 0.02


@pytest.fixture
def database(postgres_server: str) -> Iterator[Database]:
    url = create_database(postgres_server)
    try:
        yield Database(database_url=url)
    finally:
        drop_database(postgres_server, url)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A Postgres cluster of this test's own, which it may restart."""
    with throwaway_cluster() as own:
        yield own


def everywhere(*addresses: str) -> str:
    """One gRPC target for several servers."""
    return "ipv4:" + ",".join(addresses)


async def run_all(client: cmo.Client, run_ids: list[str], steps: int) -> list[cmo.RunInfo]:
    initial = counter_input(steps, sleep=STEP_SECONDS)
    await asyncio.gather(*(client.start(COUNTER, initial, run_id=r) for r in run_ids))
    return list(await asyncio.gather(*(client.wait(r, timeout=180) for r in run_ids)))


async def check_all(client: cmo.Client, runs: list[cmo.RunInfo], steps: int) -> None:
    not_completed = [(r.run_id, r.status.name) for r in runs if r.status is not cmo.RunStatus.COMPLETED]
    assert not not_completed
    for run in runs:
        assert run.result["count"] == steps
        check_counter_history(await client.get_history(run.run_id), steps)


async def test_500_runs_over_two_replicas_complete_when_one_is_killed_mid_load(
    processes: Processes, markers: Markers, database: Database
) -> None:
    a = await processes.start_server(database)
    b = await processes.start_server(database)
    target = everywhere(a.address, b.address)
    await processes.start_workers(4, target, graph="counter", marker_dir=markers.root, concurrency=10)
    run_ids = [uuid.uuid4().hex for _ in range(500)]
    async with await cmo.Client.connect(target) as client:
        load = asyncio.create_task(run_all(client, run_ids, STEPS))
        total = len(run_ids) * STEPS
        await assert_eventually(
            lambda: markers.count("finished") >= total // 4, timeout=60, what="a quarter of the steps run"
        )
        assert markers.count("finished") < total * 3 // 4, "the load was over before the kill"
        await a.kill()
        runs = await load
        await check_all(client, runs, STEPS)
    by_worker = {m["worker_id"] for m in markers.all("started")}
    assert len(by_worker) == 4  # every worker took part
    assert b.popen.poll() is None, "the surviving replica stopped"


async def test_postgres_restarted_during_load_loses_no_step_and_the_rest_recover_alone(
    processes: Processes, markers: Markers, cluster: Cluster
) -> None:
    database = Database(database_url=create_database(cluster.url))
    a = await processes.start_server(database)
    b = await processes.start_server(database)
    target = everywhere(a.address, b.address)
    await processes.start_workers(2, target, graph="counter", marker_dir=markers.root, concurrency=10)
    run_ids = [uuid.uuid4().hex for _ in range(100)]
    steps = 6
    async with await cmo.Client.connect(target) as client:
        load = asyncio.create_task(run_all(client, run_ids, steps))
        total = len(run_ids) * steps
        await assert_eventually(
            lambda: markers.count("finished") >= total // 4, timeout=60, what="a quarter of the steps run"
        )
        assert markers.count("finished") < total * 3 // 4, "the load was over before the restart"
        await asyncio.to_thread(cluster.restart, "fast")
        runs = await load
        await check_all(client, runs, steps)
    assert a.popen.poll() is None
    assert b.popen.poll() is None
    # The restart did cut the servers off: both lost their notification connection and got it back.
    for server in (a, b):
        assert "lost the notification connection" in server.log()
