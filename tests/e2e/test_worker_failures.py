"""A worker killed (kill -9) or frozen (SIGSTOP) in the middle of a step.

Another worker process takes the step over once the lease lapses and finishes the run; whatever
the lost attempt sends afterwards is refused by the attempt fence and writes nothing.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import grpc
import pytest

import cmo
from cmo.api.v1 import worker_service_pb2, worker_service_pb2_grpc
from cmo.serialization import canonical_json
from cmo_server.api._task_token import encode_task_token
from cmo_server.domain import DEFAULT_NAMESPACE, TaskRef
from tests.e2e.graphs import COUNTER, Markers, check_counter_history, counter_input
from tests.support.processes import Database, Processes, WorkerProcess
from tests.support.waiting import assert_eventually

pytestmark = pytest.mark.e2e

STEPS = 4
HELD = 1
"""The step whose first attempt the test kills or freezes (step 0 is already checkpointed then)."""
LEASE_LAPSE = 15.0
"""Generous bound for a lease (1.5 s) to lapse and another worker to claim the step."""


def _split(workers: list[WorkerProcess], pid: int) -> tuple[WorkerProcess, WorkerProcess]:
    """(the worker with this pid, the other one)."""
    (chosen,) = [w for w in workers if w.pid == pid]
    (other,) = [w for w in workers if w.pid != pid]
    return chosen, other


def _late_checkpoint(attempt: dict[str, Any], state: dict[str, Any]) -> worker_service_pb2.CompleteTaskRequest:
    """The CompleteTask a lost attempt would send: its own worker id, step and attempt."""
    ref = TaskRef(DEFAULT_NAMESPACE, attempt["run_id"], attempt["step"], attempt["attempt"], "tick", COUNTER, 1)
    request = worker_service_pb2.CompleteTaskRequest(
        worker_id=attempt["worker_id"],
        task_token=encode_task_token(ref),
        state=canonical_json(state),
        next_key="again",
    )
    request.started_at.GetCurrentTime()
    return request


async def _snapshot(client: cmo.Client, run_id: str) -> tuple[cmo.RunInfo, list[cmo.StepInfo]]:
    # Progress is a live view (its summary counts down to the lease's end), not stored state.
    run = await client.get_run(run_id)
    return dataclasses.replace(run, progress=None), await client.get_history(run_id)


async def _refused(stub: worker_service_pb2_grpc.WorkerServiceStub, request: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CompleteTask(request, timeout=10)
    return raised.value


@pytest.mark.parametrize("calls", ["session", "unary"])
async def test_worker_killed_mid_step_another_worker_finishes_and_the_late_checkpoint_is_refused(
    processes: Processes, markers: Markers, database: Database, calls: str
) -> None:
    server = await processes.start_server(database)
    workers = await processes.start_workers(2, server.address, graph="counter", marker_dir=markers.root, calls=calls)
    run_id = uuid.uuid4().hex
    # Both attempts of the held step wait for the test: the first is killed, the second is
    # released only after the zombie's checkpoint was refused while it held the lease.
    initial = counter_input(STEPS, hold=[(HELD, 1), (HELD, 2)])
    async with await cmo.Client.connect(server.address) as client, grpc.aio.insecure_channel(server.address) as ch:
        stub = worker_service_pb2_grpc.WorkerServiceStub(ch)
        handle: cmo.RunHandle[dict[str, Any]] = await client.start(COUNTER, initial, run_id=run_id)

        lost = await assert_eventually(lambda: markers.read(run_id, HELD, 1, "started"), what="attempt 1 started")
        victim, survivor = _split(workers, lost["pid"])
        await victim.kill()

        taken = await assert_eventually(
            lambda: markers.read(run_id, HELD, 2, "started"), timeout=LEASE_LAPSE, what="attempt 2 started"
        )
        assert taken["pid"] == survivor.pid

        # The zombie's checkpoint arrives while attempt 2 holds the lease.
        run, history = before = await _snapshot(client, run_id)
        assert [s.step_index for s in history] == [0]
        zombie_state = {**history[0].state, "count": HELD + 1, "trail": [0, HELD]}
        err = await _refused(stub, _late_checkpoint(lost, zombie_state))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err.details()
        assert f"attempt 1 of step {HELD}" in (err.details() or "")
        assert await _snapshot(client, run_id) == before, "the refused checkpoint wrote something"

        # Attempt 2 still owns the step: released, it checkpoints and the run goes on to the end.
        markers.release(run_id, HELD, 2)
        result = await handle.result(timeout=30)
        assert result["count"] == STEPS

        run, history = after = await _snapshot(client, run_id)
        assert run.status is cmo.RunStatus.COMPLETED
        assert run.step_count == STEPS
        check_counter_history(history, STEPS)
        assert history[HELD].attempt == 2
        for step in history[HELD:]:
            ran = markers.read(run_id, step.step_index, step.attempt, "started")
            assert ran is not None
            assert ran["pid"] == survivor.pid, f"step {step.step_index} ran on {ran}"
        assert markers.read(run_id, HELD, 1, "finished") is None, "the killed attempt must never have finished"

        # Sent again once the run is complete, it is still refused and still writes nothing.
        err = await _refused(stub, _late_checkpoint(lost, zombie_state))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err.details()
        assert await _snapshot(client, run_id) == after


async def test_worker_paused_past_its_lease_cannot_complete_the_step_another_worker_took(
    processes: Processes, markers: Markers, database: Database
) -> None:
    server = await processes.start_server(database)
    workers = await processes.start_workers(2, server.address, graph="counter", marker_dir=markers.root)
    run_id = uuid.uuid4().hex
    # Stubborn: the paused attempt's node ignores the cancellation its lost lease causes and
    # returns anyway, so its worker really sends the stale CompleteTask.
    initial = counter_input(STEPS, hold=[(HELD, 1), (HELD, 2)], stubborn=True)
    async with await cmo.Client.connect(server.address) as client:
        handle: cmo.RunHandle[dict[str, Any]] = await client.start(COUNTER, initial, run_id=run_id)

        first = await assert_eventually(lambda: markers.read(run_id, HELD, 1, "started"), what="attempt 1 started")
        paused, other = _split(workers, first["pid"])
        await paused.pause()

        second = await assert_eventually(
            lambda: markers.read(run_id, HELD, 2, "started"), timeout=LEASE_LAPSE, what="attempt 2 started"
        )
        assert second["pid"] == other.pid

        # Wake the paused worker with its node free to finish while attempt 2 holds the lease.
        markers.release(run_id, HELD, 1)
        await paused.resume()
        await assert_eventually(lambda: markers.read(run_id, HELD, 1, "finished"), what="attempt 1 finished")
        await assert_eventually(
            lambda: f"checkpoint of step {HELD} of run {run_id} refused" in paused.log(),
            what="the paused worker's checkpoint refused",
        )
        assert [s.step_index for s in await client.get_history(run_id)] == [0]

        markers.release(run_id, HELD, 2)
        result = await handle.result(timeout=30)
        assert result["count"] == STEPS

        run = await client.get_run(run_id)
        history = await client.get_history(run_id)
        assert run.status is cmo.RunStatus.COMPLETED
        assert run.step_count == STEPS
        check_counter_history(history, STEPS)
        assert history[HELD].attempt == 2, "the step table must hold the second worker's attempt"
        assert paused.alive
        assert other.alive
