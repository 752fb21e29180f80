"""Task claims, leases and step completion on SQLite: the hot path. One transaction each."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from cmo_server.domain import (
    END_NODE,
    ActivityRecord,
    AttemptEnd,
    Checkpoint,
    CompleteOutcome,
    FailDecider,
    FailDecision,
    Namespace,
    RunStatus,
    Task,
    TaskKey,
    TaskState,
    graph_key,
    split_graph_key,
)
from cmo_server.errors import FailedPrecondition, StaleLease
from cmo_server.store._rows import ACTIVITY_COLUMNS, activity_from_row, task_state_from_row, trace_from_text
from cmo_server.store.sqlite._db import (
    FENCE,
    INSERT_ACTIVITY,
    Transaction,
    activity_row,
    dt,
    fence,
    now_us,
    run_key,
    us,
)

__all__ = [
    "claim_task",
    "complete_step",
    "extend_lease",
    "fail_task",
    "get_task",
    "next_ready_at",
    "ready_queues",
    "release_task",
]

# One ordered probe of tasks_ready per (queue, graph key) pair, the oldest hit wins: a backlog of
# other queues or graph versions is never read or sorted (the same plan as the Postgres claim).
# The graph key names the namespace, so a probe never finds another namespace's task.
SELECT_READY_TASK = """
    SELECT namespace, run_id, visible_at, lease_owner IS NOT NULL FROM tasks
     WHERE task_queue = ? AND graph_key = ? AND visible_at <= ?
     ORDER BY visible_at LIMIT 1
"""
LEASE_TASK = """
    UPDATE tasks SET attempt = attempt + 1, lease_owner = :worker_id, visible_at = :expires
     WHERE namespace = :namespace AND run_id = :run_id
 RETURNING step_index, attempt, node_id, task_queue, graph_key, logical_time, failures
"""
MARK_RUN_RUNNING = """
    UPDATE runs SET status = 2, updated_at = :now WHERE namespace = :namespace AND run_id = :run_id AND status = 1
"""
SELECT_RUN_START = """
    SELECT input, seed, cancel_requested, trace_context FROM runs WHERE namespace = :namespace AND run_id = :run_id
"""
SELECT_STEP_STATE = """
    SELECT state FROM steps WHERE namespace = :namespace AND run_id = :run_id AND step_index = :step_index
"""
SELECT_READY_QUEUES = """
    SELECT DISTINCT task_queue, graph_key FROM tasks
     WHERE task_queue IN (SELECT value FROM json_each(?)) AND visible_at <= ?
"""
SELECT_NEXT_READY_AT = """
    SELECT min(visible_at) FROM tasks WHERE task_queue IN (SELECT value FROM json_each(?)) AND wait_kind IS NULL
"""
SELECT_ACTIVITIES = f"""
    SELECT {ACTIVITY_COLUMNS} FROM activities
     WHERE namespace = :namespace AND run_id = :run_id AND step_index = :step_index ORDER BY seq
"""
SELECT_TASK = """
    SELECT t.run_id, t.step_index, t.attempt, t.node_id, t.graph_key, t.task_queue, t.failures, t.lease_owner,
           r.cancel_requested
      FROM tasks t JOIN runs r ON r.namespace = t.namespace AND r.run_id = t.run_id
     WHERE t.namespace = :namespace AND t.run_id = :run_id
"""
EXTEND_LEASE = f"UPDATE tasks SET visible_at = :expires WHERE {FENCE}"
ADVANCE_TASK = f"""
    UPDATE tasks
       SET step_index = step_index + 1, node_id = :next_node, task_queue = :next_queue,
           attempt = :next_attempt, failures = 0, visible_at = :visible_at, lease_owner = :owner,
           logical_time = :now, last_failure = NULL
     WHERE {FENCE} AND node_id = :node_id AND graph_key = :graph_key
"""
DELETE_TASK = f"DELETE FROM tasks WHERE {FENCE} AND node_id = :node_id AND graph_key = :graph_key"
DELETE_TASK_FENCED = f"DELETE FROM tasks WHERE {FENCE}"
INSERT_STEP = """
    INSERT INTO steps (namespace, run_id, step_index, node_id, attempt, state, state_hash, output, next_key,
                       next_node, logical_time, started_at, finished_at)
    VALUES (:namespace, :run_id, :step_index, :node_id, :attempt, :state, :state_hash, :output, :next_key,
            :next_node, :logical_time, :started_at, :now)
"""
SELECT_TASK_LOGICAL_TIME = "SELECT logical_time FROM tasks WHERE namespace = :namespace AND run_id = :run_id"
COMPLETE_RUN = """
    UPDATE runs SET status = 4, result = :state, step_count = :step_count, updated_at = :now, completed_at = :now
     WHERE namespace = :namespace AND run_id = :run_id
"""
SELECT_COMPLETED_STEP = """
    SELECT s.attempt, s.node_id, s.state_hash, s.output, s.next_key, r.status
      FROM steps s JOIN runs r ON r.namespace = s.namespace AND r.run_id = s.run_id
     WHERE s.namespace = :namespace AND s.run_id = :run_id AND s.step_index = :step_index
"""
SELECT_FENCED_FAILURES = f"SELECT failures FROM tasks WHERE {FENCE}"
RETRY_TASK = f"""
    UPDATE tasks SET failures = failures + 1, lease_owner = NULL, visible_at = :visible_at,
                     last_failure = :failure
     WHERE {FENCE}
"""
RELEASE_TASK = f"UPDATE tasks SET lease_owner = NULL, visible_at = :now WHERE {FENCE}"
FAIL_RUN = """
    UPDATE runs SET status = :status, failure = :failure, step_count = :step_index, updated_at = :now,
                    completed_at = :now
     WHERE namespace = :namespace AND run_id = :run_id
"""


def _state_before(
    conn: sqlite3.Connection, run: dict[str, Any], step_index: int
) -> tuple[bytes, int, bool, dict[str, str]]:
    """A step's start: the previous checkpoint's state (or the input), seed, cancelled, trace context."""
    run_input, seed, cancelled, trace = conn.execute(SELECT_RUN_START, run).fetchone()
    if step_index > 0:
        run_input = conn.execute(SELECT_STEP_STATE, {**run, "step_index": step_index - 1}).fetchone()[0]
    return run_input, seed, bool(cancelled), trace_from_text(trace)


def claim_task(
    conn: sqlite3.Connection, queues: list[str], graphs: list[str], worker_id: str, lease: timedelta
) -> Task | None:
    """See `Store.claim_task`."""
    now = now_us()
    expires = now + us(lease)
    with Transaction(conn):
        hits = [
            hit
            for queue in queues
            for key in graphs
            if (hit := conn.execute(SELECT_READY_TASK, (queue, key, now)).fetchone()) is not None
        ]
        if not hits:
            return None
        namespace, run_id, _, lapsed = min(hits, key=lambda hit: hit[2])
        run = {"namespace": namespace, "run_id": run_id}
        step_index, attempt, node_id, queue, key, logical_time, failures = conn.execute(
            LEASE_TASK, {**run, "worker_id": worker_id, "expires": expires}
        ).fetchone()
        if step_index == 0:
            conn.execute(MARK_RUN_RUNNING, {**run, "now": now})
        state, seed, cancelled, trace = _state_before(conn, run, step_index)
        recorded = conn.execute(SELECT_ACTIVITIES, {**run, "step_index": step_index})
        activities = tuple(activity_from_row(row, dt) for row in recorded)
    _, graph_id, version = split_graph_key(key)
    return Task(
        namespace=Namespace.parse(namespace),
        run_id=run_id,
        step_index=step_index,
        attempt=attempt,
        node_id=node_id,
        graph_id=graph_id,
        graph_version=version,
        task_queue=queue,
        state=state,
        logical_time=dt(logical_time),
        seed=seed,
        lease_expires_at=dt(expires),
        failures=failures,
        activities=activities,
        cancel_requested=cancelled,
        trace_context=trace,
        previous_lease_expired=bool(lapsed),
        worker_id=worker_id,
    )


def ready_queues(conn: sqlite3.Connection, queues: list[str]) -> set[tuple[str, str]]:
    """See `Store.ready_queues`."""
    return {(q, k) for q, k in conn.execute(SELECT_READY_QUEUES, (json.dumps(queues), now_us()))}


def next_ready_at(conn: sqlite3.Connection, queues: list[str]) -> datetime | None:
    """See `Store.next_ready_at`."""
    (at,) = conn.execute(SELECT_NEXT_READY_AT, (json.dumps(queues),)).fetchone()
    return None if at is None else dt(at)


def extend_lease(conn: sqlite3.Connection, key: TaskKey, lease: timedelta) -> tuple[datetime, bool]:
    """See `Store.extend_lease`."""
    expires = now_us() + us(lease)
    with Transaction(conn):
        if conn.execute(EXTEND_LEASE, {**fence(key), "expires": expires}).rowcount == 0:
            raise StaleLease(key.run_id, key.step_index, key.attempt)
        cancelled = conn.execute(SELECT_RUN_START, run_key(key.namespace, key.run_id)).fetchone()[2]
    return dt(expires), bool(cancelled)


def complete_step(conn: sqlite3.Connection, c: Checkpoint) -> CompleteOutcome:
    """See `Store.complete_step`."""
    now = now_us()
    key = c.key
    run = run_key(key.namespace, key.run_id)
    fenced = {**fence(key), "node_id": c.node_id, "graph_key": graph_key(key.namespace, c.graph_id, c.graph_version)}
    with Transaction(conn):
        logical = conn.execute(SELECT_TASK_LOGICAL_TIME, run).fetchone()
        finished = c.next_node == END_NODE
        if finished:
            moved = conn.execute(DELETE_TASK, fenced).rowcount
        else:
            lease_expires = now + us(c.lease)
            moved = conn.execute(
                ADVANCE_TASK,
                {
                    **fenced,
                    "next_node": c.next_node,
                    "next_queue": c.next_queue,
                    "next_attempt": 1 if c.eager_worker else 0,
                    "visible_at": lease_expires if c.eager_worker else now,
                    "owner": c.eager_worker,
                    "now": now,
                },
            ).rowcount
        if moved == 0:
            return _not_current(conn, c)
        if c.activities:
            conn.executemany(INSERT_ACTIVITY, [{**activity_row(key, a), "now": now} for a in c.activities])
        conn.execute(
            INSERT_STEP,
            {
                **run,
                "step_index": key.step_index,
                "node_id": c.node_id,
                "attempt": key.attempt,
                "state": c.state,
                "state_hash": c.state_hash,
                "output": c.output,
                "next_key": c.next_key,
                "next_node": c.next_node,
                "logical_time": logical[0],
                "started_at": int(c.started_at.timestamp() * 1_000_000),
                "now": now,
            },
        )
        if finished:
            conn.execute(COMPLETE_RUN, {**run, "state": c.state, "step_count": key.step_index + 1, "now": now})
            return CompleteOutcome(RunStatus.COMPLETED, finished_at=dt(now))
        if not c.eager_worker:
            return CompleteOutcome(RunStatus.RUNNING, enqueued=(c.next_queue, fenced["graph_key"]))
        seed, cancelled, trace = conn.execute(SELECT_RUN_START, run).fetchone()[1:]
    next_task = c.leased_next_task(logical_time=dt(now), seed=seed, lease_expires_at=dt(lease_expires))
    next_task = replace(next_task, cancel_requested=bool(cancelled), trace_context=trace_from_text(trace))
    return CompleteOutcome(RunStatus.RUNNING, next_task=next_task)


def _not_current(conn: sqlite3.Connection, c: Checkpoint) -> CompleteOutcome:
    """A fenced write matched nothing: a re-send of a done step, or a stale attempt."""
    key = c.key
    row = conn.execute(SELECT_COMPLETED_STEP, fence(key)).fetchone()
    if row is None or row[0] != key.attempt:
        raise StaleLease(key.run_id, key.step_index, key.attempt)
    if not c.same_as(node_id=row[1], state_hash=row[2], output=row[3], next_key=row[4]):
        raise FailedPrecondition(c.differs_message())
    return CompleteOutcome(RunStatus(row[5]), duplicate=True)


def get_task(conn: sqlite3.Connection, namespace: Namespace, run_id: str) -> TaskState | None:
    """See `Store.get_task`."""
    row = conn.execute(SELECT_TASK, run_key(namespace, run_id)).fetchone()
    return None if row is None else task_state_from_row(row)


def release_task(conn: sqlite3.Connection, key: TaskKey) -> None:
    """See `Store.release_task`."""
    with Transaction(conn):
        if conn.execute(RELEASE_TASK, {**fence(key), "now": now_us()}).rowcount == 0:
            raise StaleLease(key.run_id, key.step_index, key.attempt)


def fail_task(
    conn: sqlite3.Connection, key: TaskKey, decide: FailDecider, activities: tuple[ActivityRecord, ...]
) -> tuple[TaskState, FailDecision]:
    """See `Store.fail_task`."""
    now = now_us()
    with Transaction(conn):
        task = get_task(conn, key.namespace, key.run_id)
        if task is None or conn.execute(SELECT_FENCED_FAILURES, fence(key)).fetchone() is None:
            raise StaleLease(key.run_id, key.step_index, key.attempt)
        decision = decide(task)  # may refuse the request: the transaction then writes nothing
        if activities:
            conn.executemany(INSERT_ACTIVITY, [{**activity_row(key, a), "now": now} for a in activities])
        failure = json.dumps(decision.failure.to_json())
        if decision.end is AttemptEnd.RELEASE:
            conn.execute(RELEASE_TASK, {**fence(key), "now": now})
        elif decision.end is AttemptEnd.RETRY:
            conn.execute(RETRY_TASK, {**fence(key), "visible_at": now + us(decision.delay), "failure": failure})
        else:
            status = RunStatus.CANCELLED if decision.end is AttemptEnd.CANCEL else RunStatus.FAILED
            conn.execute(DELETE_TASK_FENCED, fence(key))
            ended = {**fence(key), "now": now, "status": int(status)}
            conn.execute(FAIL_RUN, {**ended, "failure": failure})
    return task, decision
