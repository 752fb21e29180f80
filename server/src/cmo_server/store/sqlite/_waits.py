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
from cmo_server.store._rows import activity_params
from cmo_server.store.sqlite._db import FENCE, INSERT_ACTIVITY, Transaction, dt, fence, now_us, us

__all__ = ["cancel_run", "fire_due_waits", "next_wait_at", "signal_run", "suspend_task"]

GetRun = Callable[[sqlite3.Connection, Namespace, str], Run | None]
RunKey = dict[str, Any]
"""The named parameters `namespace` (as stored) and `run_id` of a run's statements."""

NEVER = 2**63 - 1
"""visible_at of a waiting task: no claim ever sees it."""

RUN = "namespace = :namespace AND run_id = :run_id"
"""The condition naming one run (its task, its signals)."""

SELECT_LEASED_TASK = f"""
    SELECT task_queue, graph_key, cancel_requested, cancel_reason FROM tasks JOIN runs USING (namespace, run_id)
     WHERE {FENCE}
"""
SELECT_RECORDED = f"SELECT 1 FROM activities WHERE {RUN} AND step_index = :step_index AND seq = :seq"
SELECT_PENDING_SIGNAL = f"""
    SELECT signal_id, payload FROM signals
     WHERE {RUN} AND name = :name AND consumed_step IS NULL ORDER BY signal_id LIMIT 1
"""
CONSUME_SIGNAL = "UPDATE signals SET consumed_step = :step_index, consumed_seq = :seq WHERE signal_id = :signal_id"
START_WAIT = f"""
    UPDATE tasks SET lease_owner = NULL, visible_at = :never, wait_kind = :kind, wait_name = :name,
                     wait_seq = :seq, wait_hash = :request_hash, wait_until = :until
     WHERE {RUN}
"""
MARK_WAITING = f"UPDATE runs SET status = 3, updated_at = :now WHERE {RUN}"
# The wait is over: the task is ready for its next attempt, which replays to the recorded outcome.
END_WAIT = f"""
    UPDATE tasks SET lease_owner = NULL, visible_at = :now, wait_kind = NULL, wait_name = NULL, wait_seq = NULL,
                     wait_hash = NULL, wait_until = NULL
     WHERE {RUN}
"""
MARK_RESUMED = f"UPDATE runs SET status = 2, updated_at = :now WHERE {RUN} AND status = 3"
SELECT_RUN_STATE = f"SELECT status, cancel_requested FROM runs WHERE {RUN}"
SELECT_SIGNAL_REQUEST = f"SELECT 1 FROM signals WHERE {RUN} AND request_id = :request_id"
INSERT_SIGNAL = """
    INSERT INTO signals (namespace, run_id, name, payload, request_id, sent_at)
    VALUES (:namespace, :run_id, :name, :payload, :request_id, :now)
"""
SELECT_WAIT = """
    SELECT namespace, run_id, step_index, attempt, wait_kind, wait_name, wait_seq, wait_hash, task_queue, graph_key
      FROM tasks
"""
SELECT_RUN_WAIT = SELECT_WAIT + f" WHERE {RUN}"
SELECT_TASK_FOR_CANCEL = f"SELECT step_index, lease_owner, wait_kind FROM tasks WHERE {RUN}"
MARK_CANCEL_REQUESTED = f"UPDATE runs SET cancel_requested = 1, cancel_reason = :reason, updated_at = :now WHERE {RUN}"
CANCEL_NOW = f"""
    UPDATE runs SET status = 6, failure = :failure, step_count = :step_index, updated_at = :now, completed_at = :now
     WHERE {RUN}
"""
DELETE_TASK = f"DELETE FROM tasks WHERE {RUN}"
SELECT_DUE = SELECT_WAIT + " WHERE wait_until <= ? ORDER BY wait_until LIMIT 1000"


def suspend_task(
    conn: sqlite3.Connection, key: TaskKey, wait: WaitRequest, activities: tuple[ActivityRecord, ...]
) -> WaitOutcome:
    """See `Store.suspend_task`."""
    now = now_us()
    run = {"namespace": str(key.namespace), "run_id": key.run_id}
    with Transaction(conn):
        row = conn.execute(SELECT_LEASED_TASK, fence(key)).fetchone()
        if row is None:
            raise StaleLease(key.run_id, key.step_index, key.attempt)
        queue, graph, cancelled, reason = row
        ready = (queue, graph)
        for activity in activities:
            _record(conn, run, key.step_index, activity, now)
        if conn.execute(SELECT_RECORDED, {**run, "step_index": key.step_index, "seq": wait.seq}).fetchone() is None:
            outcome = _ready_outcome(conn, run, key, wait, cancelled=bool(cancelled), reason=reason or "")
            if outcome is None:
                until = None if wait.duration is None else now + us(wait.duration)
                conn.execute(
                    START_WAIT,
                    {
                        **run,
                        "never": NEVER,
                        "kind": wait.kind,
                        "name": wait.name,
                        "seq": wait.seq,
                        "request_hash": wait.request_hash,
                        "until": until,
                    },
                )
                conn.execute(MARK_WAITING, {**run, "now": now})
                return WaitOutcome(False, ready, None if until is None else dt(until))
            _record(conn, run, key.step_index, outcome, now)
        conn.execute(END_WAIT, {**run, "now": now})
    return WaitOutcome(True, ready)


def _ready_outcome(
    conn: sqlite3.Connection, run: RunKey, key: TaskKey, wait: WaitRequest, *, cancelled: bool, reason: str
) -> ActivityRecord | None:
    """The wait's outcome if it is over before it starts (consuming a pending signal), else None."""
    over = wait.outcome_before_start(attempt=key.attempt, cancel_reason=reason if cancelled else None)
    if over is None and wait.kind == WAIT_SIGNAL:
        signal = conn.execute(SELECT_PENDING_SIGNAL, {**run, "name": wait.name}).fetchone()
        if signal is not None:
            conn.execute(CONSUME_SIGNAL, {"step_index": key.step_index, "seq": wait.seq, "signal_id": signal[0]})
            return wait.record(result=signal[1], error=None, attempt=key.attempt)
    return over


def signal_run(conn: sqlite3.Connection, signal: NewSignal, get_run: GetRun) -> SignalOutcome | None:
    """See `Store.signal_run`."""
    now = now_us()
    delivered, ready = False, None
    run = {"namespace": str(signal.namespace), "run_id": signal.run_id}
    with Transaction(conn):
        row = conn.execute(SELECT_RUN_STATE, run).fetchone()
        if row is None:
            return None
        status = RunStatus(row[0])
        if status.terminal:
            raise FailedPrecondition(f"run {signal.run_id!r} has ended ({status.name}); it takes no more signals")
        request_id = signal.request_id or None
        repeat = (
            request_id is not None and conn.execute(SELECT_SIGNAL_REQUEST, {**run, "request_id": request_id}).fetchone()
        )
        if not repeat:
            sent = {**run, "name": signal.name, "payload": signal.payload, "request_id": request_id, "now": now}
            conn.execute(INSERT_SIGNAL, sent)
            waiting = conn.execute(SELECT_RUN_WAIT, run).fetchone()
            if waiting is not None and waiting[4] == WAIT_SIGNAL and waiting[5] == signal.name:
                _, _, step_index, attempt, kind, name, seq, request_hash, queue, graph = waiting
                pending = conn.execute(SELECT_PENDING_SIGNAL, {**run, "name": name}).fetchone()
                conn.execute(CONSUME_SIGNAL, {"step_index": step_index, "seq": seq, "signal_id": pending[0]})
                wait = WaitRequest(seq=seq, kind=kind, name=name, duration=None, request_hash=request_hash)
                _record(conn, run, step_index, wait.record(result=pending[1], error=None, attempt=attempt), now)
                _end_wait(conn, run, now)
                delivered, ready = True, (queue, graph)
        stored = get_run(conn, signal.namespace, signal.run_id)
    assert stored is not None
    return SignalOutcome(stored, delivered, ready)


def cancel_run(
    conn: sqlite3.Connection, namespace: Namespace, run_id: str, failure: Failure, get_run: GetRun
) -> CancelOutcome | None:
    """See `Store.cancel_run`."""
    now = now_us()
    ready = None
    run = {"namespace": str(namespace), "run_id": run_id}
    with Transaction(conn):
        row = conn.execute(SELECT_RUN_STATE, run).fetchone()
        if row is None:
            return None
        # A repeat changes nothing: the node may be winding up from the first request.
        if not RunStatus(row[0]).terminal and not row[1]:
            conn.execute(MARK_CANCEL_REQUESTED, {**run, "reason": failure.message, "now": now})
            step_index, lease_owner, wait_kind = conn.execute(SELECT_TASK_FOR_CANCEL, run).fetchone()
            if wait_kind is not None:
                ready = _wake(conn, conn.execute(SELECT_RUN_WAIT, run).fetchone(), failure, now)
            elif lease_owner is None:
                # Nothing runs the step: there is nobody to see the request, so the run ends now.
                conn.execute(DELETE_TASK, run)
                params = {"failure": json.dumps(failure.to_json()), "step_index": step_index, "now": now}
                conn.execute(CANCEL_NOW, {**params, **run})
        stored = get_run(conn, namespace, run_id)
    assert stored is not None
    return CancelOutcome(stored, ready)


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
    namespace, run_id, step_index, attempt, kind, name, seq, request_hash, queue, graph = waiting
    run = {"namespace": namespace, "run_id": run_id}
    wait = WaitRequest(seq=seq, kind=kind, name=name, duration=None, request_hash=request_hash)
    _record(conn, run, step_index, wait.ended(attempt=attempt, failure=failure), now)
    _end_wait(conn, run, now)
    return queue, graph


def _end_wait(conn: sqlite3.Connection, run: RunKey, now: int) -> None:
    conn.execute(END_WAIT, {**run, "now": now})
    conn.execute(MARK_RESUMED, {**run, "now": now})


def _record(conn: sqlite3.Connection, run: RunKey, step_index: int, activity: ActivityRecord, now: int) -> None:
    params = activity_params(Namespace.parse(run["namespace"]), run["run_id"], step_index, activity)
    conn.execute(INSERT_ACTIVITY, {**params, "now": now})
