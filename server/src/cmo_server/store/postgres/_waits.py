"""Waits on Postgres: suspending a step, signals, cancellation, timers.

Off the hot path, so each is a short explicit transaction of a few statements. Each locks the
run's task row first (FOR UPDATE) and only then writes its run row, the order every transition
of the hot path takes too (checkpoint, termination), so they serialise per run without deadlocks.
An unfinished run always has its task row: no row means the run has ended, or never existed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from cmo_server.domain import (
    WAIT_SIGNAL,
    ActivityRecord,
    CancelOutcome,
    Failure,
    Namespace,
    NewSignal,
    Run,
    RunStatus,
    SignalOutcome,
    TaskKey,
    WaitOutcome,
    WaitRequest,
)
from cmo_server.errors import FailedPrecondition, StaleLease
from cmo_server.store._rows import REPLACEABLE_RECORD, activity_params, run_from_row
from cmo_server.store.postgres._activities import INSERT_ACTIVITY
from cmo_server.store.postgres._db import FENCE, Pool, fence, same
from cmo_server.store.postgres._runs import SELECT_RUN

__all__ = ["PostgresWaits"]

Conn = AsyncConnection[TupleRow]

LOCK_LEASED_TASK = f"""
    SELECT task_queue, graph_key, cancel_requested, cancel_reason FROM tasks JOIN runs USING (namespace, run_id)
     WHERE {FENCE} FOR UPDATE OF tasks
"""
# The wait's outcome is recorded already (a re-sent suspension); an older attempt's failure at its
# seq is not: the wait replaces it.
SELECT_RECORDED = f"""
    SELECT 1 FROM activities
     WHERE namespace = %(namespace)s AND run_id = %(run_id)s AND step_index = %(step_index)s AND seq = %(seq)s
       AND NOT ({REPLACEABLE_RECORD} AND activities.attempt < %(attempt)s)
"""
TAKE_PENDING_SIGNAL = """
    UPDATE signals SET consumed_step = %(step_index)s, consumed_seq = %(seq)s
     WHERE signal_id = (SELECT signal_id FROM signals
                         WHERE namespace = %(namespace)s AND run_id = %(run_id)s AND name = %(name)s
                           AND consumed_step IS NULL
                         ORDER BY signal_id LIMIT 1 FOR UPDATE)
 RETURNING payload
"""
START_WAIT = """
    UPDATE tasks SET lease_owner = NULL, visible_at = 'infinity', wait_kind = %(kind)s, wait_name = %(name)s,
                     wait_seq = %(seq)s, wait_hash = %(request_hash)s,
                     wait_until = now() + %(duration)s::interval
     WHERE namespace = %(namespace)s AND run_id = %(run_id)s
 RETURNING wait_until
"""
MARK_WAITING = """
    UPDATE runs SET status = %(waiting)s, updated_at = now() WHERE namespace = %(namespace)s AND run_id = %(run_id)s
"""
# The wait is over: the task is ready for its next attempt, which replays to the recorded outcome.
END_WAIT = """
    UPDATE tasks SET lease_owner = NULL, visible_at = now(), wait_kind = NULL, wait_name = NULL, wait_seq = NULL,
                     wait_hash = NULL, wait_until = NULL
     WHERE namespace = %(namespace)s AND run_id = %(run_id)s
"""
MARK_RESUMED = """
    UPDATE runs SET status = %(running)s, updated_at = now()
     WHERE namespace = %(namespace)s AND run_id = %(run_id)s AND status = %(waiting)s
"""
SELECT_RUN_STATUS = "SELECT status FROM runs WHERE namespace = %(namespace)s AND run_id = %(run_id)s"
INSERT_SIGNAL = """
    INSERT INTO signals (namespace, run_id, name, payload, request_id, sent_at)
    VALUES (%(namespace)s, %(run_id)s, %(name)s, %(payload)s, %(request_id)s, now())
    ON CONFLICT (namespace, run_id, request_id) WHERE request_id IS NOT NULL DO NOTHING
"""
WAIT_COLUMNS = (
    "namespace, run_id, step_index, attempt, wait_kind, wait_name, wait_seq, wait_hash, task_queue, graph_key"
)
LOCK_WAIT = f"SELECT {WAIT_COLUMNS} FROM tasks WHERE namespace = %(namespace)s AND run_id = %(run_id)s FOR UPDATE"
LOCK_TASK_FOR_CANCEL = f"""
    SELECT cancel_requested, lease_owner, {WAIT_COLUMNS} FROM tasks JOIN runs USING (namespace, run_id)
     WHERE namespace = %(namespace)s AND run_id = %(run_id)s FOR UPDATE OF tasks
"""
MARK_CANCEL_REQUESTED = """
    UPDATE runs SET cancel_requested = true, cancel_reason = %(reason)s, updated_at = now()
     WHERE namespace = %(namespace)s AND run_id = %(run_id)s
"""
CANCEL_NOW = """
    WITH gone AS (
        DELETE FROM tasks WHERE namespace = %(namespace)s AND run_id = %(run_id)s RETURNING step_index
    )
    UPDATE runs SET status = %(cancelled)s, failure = %(failure)s, step_count = gone.step_index,
                    updated_at = now(), completed_at = now()
      FROM gone WHERE runs.namespace = %(namespace)s AND runs.run_id = %(run_id)s
"""
# SKIP LOCKED: replicas sweeping at once split the due waits between them.
LOCK_DUE = f"""
    SELECT {WAIT_COLUMNS} FROM tasks WHERE wait_until <= now() ORDER BY wait_until LIMIT 1000 FOR UPDATE SKIP LOCKED
"""
SELECT_NEXT_WAIT_AT = "SELECT min(wait_until) FROM tasks WHERE wait_until IS NOT NULL"


class PostgresWaits:
    """The waits part of `PostgresStore`."""

    _pool: Pool

    async def suspend_task(
        self, key: TaskKey, wait: WaitRequest, *, activities: tuple[ActivityRecord, ...] = ()
    ) -> WaitOutcome:
        """See `Store.suspend_task`."""
        async with self._pool.connection() as conn, conn.transaction():
            row = await (await conn.execute(LOCK_LEASED_TASK, fence(key))).fetchone()
            if row is None:
                raise StaleLease(key.run_id, key.step_index, key.attempt)
            queue, graph, cancelled, reason = row
            run = {"namespace": str(key.namespace), "run_id": key.run_id}
            for activity in activities:
                await _record(conn, run, key.step_index, activity)
            where = {**run, "step_index": key.step_index, "seq": wait.seq, "attempt": key.attempt}
            if await (await conn.execute(SELECT_RECORDED, where)).fetchone() is None:
                outcome = await _ready_outcome(conn, key, wait, cancelled=cancelled, reason=reason or "")
                if outcome is None:
                    params = {
                        "kind": wait.kind,
                        "name": wait.name,
                        "seq": wait.seq,
                        "request_hash": wait.request_hash,
                        "duration": wait.duration,
                        **run,
                    }
                    started = await (await conn.execute(START_WAIT, params)).fetchone()
                    assert started is not None
                    await conn.execute(MARK_WAITING, {"waiting": int(RunStatus.WAITING), **run})
                    return WaitOutcome(False, (queue, graph), started[0])
                await _record(conn, run, key.step_index, outcome)
            await conn.execute(END_WAIT, run)
        return WaitOutcome(True, (queue, graph))

    async def signal_run(self, signal: NewSignal) -> SignalOutcome | None:
        """See `Store.signal_run`."""
        delivered, ready = False, None
        run = {"namespace": str(signal.namespace), "run_id": signal.run_id}
        async with self._pool.connection() as conn, conn.transaction():
            waiting = await (await conn.execute(LOCK_WAIT, run)).fetchone()
            if waiting is None:
                row = await (await conn.execute(SELECT_RUN_STATUS, run)).fetchone()
                if row is None:
                    return None
                status = RunStatus(row[0])
                raise FailedPrecondition(f"run {signal.run_id!r} has ended ({status.name}); it takes no more signals")
            params = {
                **run,
                "name": signal.name,
                "payload": signal.payload,
                "request_id": signal.request_id or None,
            }
            kept = (await conn.execute(INSERT_SIGNAL, params)).rowcount == 1
            if kept and waiting[4] == WAIT_SIGNAL and waiting[5] == signal.name:
                _, _, step_index, attempt, kind, name, seq, request_hash, queue, graph = waiting
                take = {**run, "name": name, "step_index": step_index, "seq": seq}
                taken = await (await conn.execute(TAKE_PENDING_SIGNAL, take)).fetchone()
                assert taken is not None
                wait = WaitRequest(seq=seq, kind=kind, name=name, duration=None, request_hash=request_hash)
                await _record(conn, run, step_index, wait.record(result=taken[0], error=None, attempt=attempt))
                await _end_wait(conn, run)
                delivered, ready = True, (queue, graph)
            stored = await _get_run(conn, run)
        return SignalOutcome(stored, delivered, ready)

    async def cancel_run(self, namespace: Namespace, run_id: str, *, failure: Failure) -> CancelOutcome | None:
        """See `Store.cancel_run`."""
        ready = None
        run = {"namespace": str(namespace), "run_id": run_id}
        async with self._pool.connection() as conn, conn.transaction():
            task = await (await conn.execute(LOCK_TASK_FOR_CANCEL, run)).fetchone()
            # A repeat changes nothing: the node may be winding up from the first request.
            if task is not None and not task[0]:
                lease_owner, waiting = task[1], task[2:]
                await conn.execute(MARK_CANCEL_REQUESTED, {"reason": failure.message, **run})
                if waiting[4] is not None:
                    ready = await _wake(conn, waiting, failure)
                elif lease_owner is None:
                    # Nothing runs the step: there is nobody to see the request, so the run ends now.
                    params = {
                        **run,
                        "cancelled": int(RunStatus.CANCELLED),
                        "failure": json.dumps(failure.to_json()),
                    }
                    await conn.execute(CANCEL_NOW, params)
            row = await (await conn.execute(SELECT_RUN, run)).fetchone()
        return None if row is None else CancelOutcome(run_from_row(row, same), ready)

    async def next_wait_at(self) -> datetime | None:
        """See `Store.next_wait_at`."""
        async with self._pool.connection() as conn:
            row = await (await conn.execute(SELECT_NEXT_WAIT_AT)).fetchone()
        return None if row is None else row[0]

    async def fire_due_waits(self) -> set[tuple[str, str]]:
        """See `Store.fire_due_waits`."""
        async with self._pool.connection() as conn, conn.transaction():
            due = await (await conn.execute(LOCK_DUE)).fetchall()
            return {await _wake(conn, row, None) for row in due}


async def _ready_outcome(
    conn: Conn, key: TaskKey, wait: WaitRequest, *, cancelled: bool, reason: str
) -> ActivityRecord | None:
    """The wait's outcome if it is over before it starts (consuming a pending signal), else None."""
    over = wait.outcome_before_start(attempt=key.attempt, cancel_reason=reason if cancelled else None)
    if over is None and wait.kind == WAIT_SIGNAL:
        take = {
            "namespace": str(key.namespace),
            "run_id": key.run_id,
            "name": wait.name,
            "step_index": key.step_index,
            "seq": wait.seq,
        }
        taken = await (await conn.execute(TAKE_PENDING_SIGNAL, take)).fetchone()
        if taken is not None:
            return wait.record(result=taken[0], error=None, attempt=key.attempt)
    return over


async def _wake(conn: Conn, waiting: Sequence[Any], failure: Failure | None) -> tuple[str, str]:
    """End a task's wait (a WAIT_COLUMNS row) with `failure` as its outcome, or else its timeout's.

    Returns the task's (task_queue, graph key).
    """
    namespace, run_id, step_index, attempt, kind, name, seq, request_hash, queue, graph = waiting
    run = {"namespace": namespace, "run_id": run_id}
    wait = WaitRequest(seq=seq, kind=kind, name=name, duration=None, request_hash=request_hash)
    await _record(conn, run, step_index, wait.ended(attempt=attempt, failure=failure))
    await _end_wait(conn, run)
    return queue, graph


RunKey = dict[str, str]
"""The named parameters `namespace` (as stored) and `run_id` of a run's statements."""


async def _end_wait(conn: Conn, run: RunKey) -> None:
    params = {**run, "running": int(RunStatus.RUNNING), "waiting": int(RunStatus.WAITING)}
    await conn.execute(END_WAIT, params)
    await conn.execute(MARK_RESUMED, params)


async def _record(conn: Conn, run: RunKey, step_index: int, activity: ActivityRecord) -> None:
    await conn.execute(
        INSERT_ACTIVITY, activity_params(Namespace.parse(run["namespace"]), run["run_id"], step_index, activity)
    )


async def _get_run(conn: Conn, run: RunKey) -> Run:
    row = await (await conn.execute(SELECT_RUN, run)).fetchone()
    assert row is not None
    return run_from_row(row, same)
