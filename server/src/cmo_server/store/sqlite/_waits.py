"""Waits on SQLite: suspending a step, signals, cancellation, timers. One transaction each."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from cmo_server.domain import (
    WAIT_SIGNAL,
    ActivityRecord,
    CancelOutcome,
    Failure,
    NewSignal,
    Run,
    RunStatus,
    SignalOutcome,
    TaskKey,
    WaitOutcome,
    WaitRequest,
)
from cmo_server.errors import FailedPrecondition, StaleLease
from cmo_server.store._rows import REPLACEABLE_RECORD, activity_params
from cmo_server.store.sqlite._db import FENCE, INSERT_ACTIVITY, Transaction, dt, fence, now_us, us

__all__ = ["cancel_run", "fire_due_waits", "next_wait_at", "signal_run", "suspend_task"]

GetRun = Callable[[sqlite3.Connection, str], Run | None]

NEVER = 2**63 - 1
"""visible_at of a waiting task: no claim ever sees it."""

SELECT_LEASED_TASK = f"""
    SELECT task_queue, graph_key, cancel_requested, cancel_reason FROM tasks JOIN runs USING (run_id) WHERE {FENCE}
"""
# The wait's outcome is recorded already (a re-sent suspension); an older attempt's failure at its
# seq is not: the wait replaces it.
SELECT_RECORDED = f"""
    SELECT 1 FROM activities
     WHERE run_id = ? AND step_index = ? AND seq = ? AND NOT ({REPLACEABLE_RECORD} AND activities.attempt < ?)
"""
SELECT_PENDING_SIGNAL = """
    SELECT signal_id, payload FROM signals
     WHERE run_id = ? AND name = ? AND consumed_step IS NULL ORDER BY signal_id LIMIT 1
"""
CONSUME_SIGNAL = "UPDATE signals SET consumed_step = ?, consumed_seq = ? WHERE signal_id = ?"
START_WAIT = """
    UPDATE tasks SET lease_owner = NULL, visible_at = :never, wait_kind = :kind, wait_name = :name,
                     wait_seq = :seq, wait_hash = :request_hash, wait_until = :until
     WHERE run_id = :run_id
"""
MARK_WAITING = "UPDATE runs SET status = 3, updated_at = ? WHERE run_id = ?"
# The wait is over: the task is ready for its next attempt, which replays to the recorded outcome.
END_WAIT = """
    UPDATE tasks SET lease_owner = NULL, visible_at = :now, wait_kind = NULL, wait_name = NULL, wait_seq = NULL,
                     wait_hash = NULL, wait_until = NULL
     WHERE run_id = :run_id
"""
MARK_RESUMED = "UPDATE runs SET status = 2, updated_at = :now WHERE run_id = :run_id AND status = 3"
SELECT_RUN_STATE = "SELECT status, cancel_requested FROM runs WHERE run_id = ?"
SELECT_SIGNAL_REQUEST = "SELECT 1 FROM signals WHERE run_id = ? AND request_id = ?"
INSERT_SIGNAL = """
    INSERT INTO signals (run_id, name, payload, request_id, sent_at) VALUES (?, ?, ?, ?, ?)
"""
SELECT_WAIT = """
    SELECT run_id, step_index, attempt, wait_kind, wait_name, wait_seq, wait_hash, task_queue, graph_key
      FROM tasks
"""
SELECT_TASK_FOR_CANCEL = "SELECT step_index, lease_owner, wait_kind FROM tasks WHERE run_id = ?"
MARK_CANCEL_REQUESTED = "UPDATE runs SET cancel_requested = 1, cancel_reason = ?, updated_at = ? WHERE run_id = ?"
CANCEL_NOW = """
    UPDATE runs SET status = 6, failure = :failure, step_count = :step_index, updated_at = :now, completed_at = :now
     WHERE run_id = :run_id
"""
DELETE_TASK = "DELETE FROM tasks WHERE run_id = ?"
SELECT_DUE = SELECT_WAIT + " WHERE wait_until <= ? ORDER BY wait_until LIMIT 1000"


def suspend_task(
    conn: sqlite3.Connection, key: TaskKey, wait: WaitRequest, activities: tuple[ActivityRecord, ...]
) -> WaitOutcome:
    """See `Store.suspend_task`."""
    now = now_us()
    with Transaction(conn):
        row = conn.execute(SELECT_LEASED_TASK, fence(key)).fetchone()
        if row is None:
            raise StaleLease(key.run_id, key.step_index, key.attempt)
        queue, graph, cancelled, reason = row
        ready = (queue, graph)
        for activity in activities:
            _record(conn, key.run_id, key.step_index, activity, now)
        if conn.execute(SELECT_RECORDED, (key.run_id, key.step_index, wait.seq, key.attempt)).fetchone() is None:
            outcome = _ready_outcome(conn, key, wait, cancelled=bool(cancelled), reason=reason or "")
            if outcome is None:
                until = None if wait.duration is None else now + us(wait.duration)
                conn.execute(
                    START_WAIT,
                    {
                        "never": NEVER,
                        "kind": wait.kind,
                        "name": wait.name,
                        "seq": wait.seq,
                        "request_hash": wait.request_hash,
                        "until": until,
                        "run_id": key.run_id,
                    },
                )
                conn.execute(MARK_WAITING, (now, key.run_id))
                return WaitOutcome(False, ready, None if until is None else dt(until))
            _record(conn, key.run_id, key.step_index, outcome, now)
        conn.execute(END_WAIT, {"now": now, "run_id": key.run_id})
    return WaitOutcome(True, ready)


def _ready_outcome(
    conn: sqlite3.Connection, key: TaskKey, wait: WaitRequest, *, cancelled: bool, reason: str
) -> ActivityRecord | None:
    """The wait's outcome if it is over before it starts (consuming a pending signal), else None."""
    over = wait.outcome_before_start(attempt=key.attempt, cancel_reason=reason if cancelled else None)
    if over is None and wait.kind == WAIT_SIGNAL:
        signal = conn.execute(SELECT_PENDING_SIGNAL, (key.run_id, wait.name)).fetchone()
        if signal is not None:
            conn.execute(CONSUME_SIGNAL, (key.step_index, wait.seq, signal[0]))
            return wait.record(result=signal[1], error=None, attempt=key.attempt)
    return over


def signal_run(conn: sqlite3.Connection, signal: NewSignal, get_run: GetRun) -> SignalOutcome | None:
    """See `Store.signal_run`."""
    now = now_us()
    delivered, ready = False, None
    with Transaction(conn):
        row = conn.execute(SELECT_RUN_STATE, (signal.run_id,)).fetchone()
        if row is None:
            return None
        status = RunStatus(row[0])
        if status.terminal:
            raise FailedPrecondition(f"run {signal.run_id!r} has ended ({status.name}); it takes no more signals")
        request_id = signal.request_id or None
        repeat = request_id is not None and conn.execute(SELECT_SIGNAL_REQUEST, (signal.run_id, request_id)).fetchone()
        if not repeat:
            conn.execute(INSERT_SIGNAL, (signal.run_id, signal.name, signal.payload, request_id, now))
            waiting = conn.execute(SELECT_WAIT + " WHERE run_id = ?", (signal.run_id,)).fetchone()
            if waiting is not None and waiting[3] == WAIT_SIGNAL and waiting[4] == signal.name:
                run_id, step_index, attempt, kind, name, seq, request_hash, queue, graph = waiting
                pending = conn.execute(SELECT_PENDING_SIGNAL, (run_id, name)).fetchone()
                conn.execute(CONSUME_SIGNAL, (step_index, seq, pending[0]))
                wait = WaitRequest(seq=seq, kind=kind, name=name, duration=None, request_hash=request_hash)
                _record(conn, run_id, step_index, wait.record(result=pending[1], error=None, attempt=attempt), now)
                _end_wait(conn, run_id, now)
                delivered, ready = True, (queue, graph)
        run = get_run(conn, signal.run_id)
    assert run is not None
    return SignalOutcome(run, delivered, ready)


def cancel_run(conn: sqlite3.Connection, run_id: str, failure: Failure, get_run: GetRun) -> CancelOutcome | None:
    """See `Store.cancel_run`."""
    now = now_us()
    ready = None
    with Transaction(conn):
        row = conn.execute(SELECT_RUN_STATE, (run_id,)).fetchone()
        if row is None:
            return None
        # A repeat changes nothing: the node may be winding up from the first request.
        if not RunStatus(row[0]).terminal and not row[1]:
            conn.execute(MARK_CANCEL_REQUESTED, (failure.message, now, run_id))
            step_index, lease_owner, wait_kind = conn.execute(SELECT_TASK_FOR_CANCEL, (run_id,)).fetchone()
            if wait_kind is not None:
                ready = _wake(conn, conn.execute(SELECT_WAIT + " WHERE run_id = ?", (run_id,)).fetchone(), failure, now)
            elif lease_owner is None:
                # Nothing runs the step: there is nobody to see the request, so the run ends now.
                conn.execute(DELETE_TASK, (run_id,))
                params = {"failure": json.dumps(failure.to_json()), "step_index": step_index, "now": now}
                conn.execute(CANCEL_NOW, {**params, "run_id": run_id})
        run = get_run(conn, run_id)
    assert run is not None
    return CancelOutcome(run, ready)


def next_wait_at(conn: sqlite3.Connection) -> datetime | None:
    """See `Store.next_wait_at`."""
    (at,) = conn.execute("SELECT min(wait_until) FROM tasks WHERE wait_until IS NOT NULL").fetchone()
    return None if at is None else dt(at)


def fire_due_waits(conn: sqlite3.Connection) -> set[tuple[str, str]]:
    """See `Store.fire_due_waits`."""
    now = now_us()
    with Transaction(conn):
        return {_wake(conn, row, None, now) for row in conn.execute(SELECT_DUE, (now,)).fetchall()}


def _wake(conn: sqlite3.Connection, waiting: Sequence[Any], failure: Failure | None, now: int) -> tuple[str, str]:
    """End a task's wait (a SELECT_WAIT row) with `failure` as its outcome, or else its timeout's.

    Returns the task's (task_queue, graph key).
    """
    run_id, step_index, attempt, kind, name, seq, request_hash, queue, graph = waiting
    wait = WaitRequest(seq=seq, kind=kind, name=name, duration=None, request_hash=request_hash)
    _record(conn, run_id, step_index, wait.ended(attempt=attempt, failure=failure), now)
    _end_wait(conn, run_id, now)
    return queue, graph


def _end_wait(conn: sqlite3.Connection, run_id: str, now: int) -> None:
    conn.execute(END_WAIT, {"now": now, "run_id": run_id})
    conn.execute(MARK_RESUMED, {"now": now, "run_id": run_id})


def _record(conn: sqlite3.Connection, run_id: str, step_index: int, activity: ActivityRecord, now: int) -> None:
    conn.execute(INSERT_ACTIVITY, {**activity_params(run_id, step_index, activity), "now": now})
