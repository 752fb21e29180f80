"""kill -9 around an activity: what was recorded is not run again; what was in flight may be, once.

The side effects land in a real sink (an SQLite table keyed by the activity's idempotency key,
counting executions), so the test counts what really happened, not what the worker said.
"""

from __future__ import annotations

import uuid

import pytest

import cmo
from tests.e2e.graphs import ORDERS, Markers, sink_effects
from tests.support.processes import Database, Processes
from tests.support.waiting import assert_eventually

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("hold", "marker", "ship_runs"),
    [
        # Killed after the record, before the checkpoint: neither activity runs again.
        ("after_record", "recorded", 1),
        # Killed between ship's side effect and its record: charge (recorded) is not run again;
        # ship, in flight at the crash, runs again under the same idempotency key.
        ("after_effect", "effect", 2),
    ],
)
async def test_recovery_does_not_run_recorded_activities_again(
    processes: Processes, markers: Markers, database: Database, hold: str, marker: str, ship_runs: int
) -> None:
    server = await processes.start_server(database)
    first = await processes.start_worker(server.address, graph="orders", marker_dir=markers.root)
    run_id = uuid.uuid4().hex
    async with await cmo.Client.connect(server.address) as client:
        await client.start(ORDERS, {"order": "o-7", "hold": hold}, run_id=run_id, version=1)
        await assert_eventually(lambda: markers.read(run_id, 0, 1, marker), timeout=20, what=f"the {marker} marker")
        await first.kill()

        await processes.start_worker(server.address, graph="orders", marker_dir=markers.root)
        run = await client.wait(run_id, timeout=30)
        steps = await client.get_history(run_id)

    assert run.status is cmo.RunStatus.COMPLETED
    assert [(s.step_index, s.attempt) for s in steps] == [(0, 2)]
    effects = sink_effects(markers)
    runs_by_name = {name: runs for (name, _), runs in effects.items()}
    assert runs_by_name == {"charge": 1, "ship": ship_runs}
    # One key per activity, the same on both attempts, and the one the node's result carries.
    keys = {name: key for (name, key) in effects}
    assert run.result["charged"] == keys["charge"]
    assert run.result["shipped"] == keys["ship"]
