"""Task claims, leases and step completion on Postgres: the hot path.

Each method is one statement in autocommit mode, so one short transaction and one round trip.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

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
from cmo_server.store._rows import (
    ACTIVITY_COLUMNS,
    ON_RECORD_CONFLICT,
    activity_arrays,
    activity_from_row,
    task_state_from_row,
    trace_from_text,
)
from cmo_server.store.postgres._db import FENCE, PooledStatements, fence, same

__all__ = ["PostgresTasks"]


# SKIP LOCKED lets concurrent claimers take different rows instead of queueing behind one. Each
# (queue, graph key) pair is an ordered probe of tasks_ready that stops at its oldest unlocked
# ready task (so it may lock one row per pair for the statement's few hundred µs); the oldest of
# those is leased. Measured with 20,000 ready tasks: `task_queue = ANY(...) AND graph_key =
# ANY(...) ORDER BY visible_at` read and sorted all of them, 8 ms a claim; the probes take 1 ms, and
# stay there when the backlog belongs to another queue or graph version. The
# state before the step is the run input (step 0) or the previous checkpoint; it is read from the
# statement's snapshot, which misses that checkpoint if the step was completed after the snapshot
# was taken and before the row was locked: `claim_task` then reads it again. A ready row that still
# has a lease owner is one whose lease lapsed (every other end of an attempt clears the owner).
CLAIM_TASK = """
    WITH picked AS (
        SELECT ready.namespace, ready.run_id, ready.lapsed
          FROM unnest(%(queues)s::text[]) AS q (task_queue)
         CROSS JOIN unnest(%(graphs)s::text[]) AS g (graph_key)
         CROSS JOIN LATERAL (
                SELECT namespace, run_id, visible_at, lease_owner IS NOT NULL AS lapsed FROM tasks
                 WHERE task_queue = q.task_queue AND graph_key = g.graph_key AND visible_at <= now()
                 ORDER BY visible_at LIMIT 1
                   FOR UPDATE SKIP LOCKED
               ) AS ready
         ORDER BY ready.visible_at LIMIT 1
    ), leased AS (
        UPDATE tasks t SET attempt = t.attempt + 1, lease_owner = %(worker_id)s, visible_at = now() + %(lease)s
          FROM picked WHERE t.namespace = picked.namespace AND t.run_id = picked.run_id
     RETURNING t.namespace, t.run_id, t.step_index, t.attempt, t.node_id, t.task_queue, t.graph_key,
               t.logical_time, t.failures, t.visible_at
    ), started AS (
        UPDATE runs SET status = %(running)s, updated_at = now()
          FROM leased l WHERE runs.namespace = l.namespace AND runs.run_id = l.run_id AND l.step_index = 0
           AND runs.status = %(pending)s
    )
    SELECT l.run_id, l.step_index, l.attempt, l.node_id, l.task_queue, l.graph_key, l.logical_time,
           l.failures, l.visible_at, r.seed, CASE WHEN l.step_index = 0 THEN r.input ELSE s.state END,
           EXISTS (SELECT 1 FROM activities a
                    WHERE a.namespace = l.namespace AND a.run_id = l.run_id AND a.step_index = l.step_index),
           r.cancel_requested, r.trace_context, (SELECT lapsed FROM picked), l.namespace
      FROM leased l JOIN runs r ON r.namespace = l.namespace AND r.run_id = l.run_id
      LEFT JOIN steps s ON s.namespace = l.namespace AND s.run_id = l.run_id AND s.step_index = l.step_index - 1
"""
SELECT_STEP_STATE = """
    SELECT state FROM steps WHERE namespace = %(namespace)s AND run_id = %(run_id)s AND step_index = %(step_index)s
"""
SELECT_READY_QUEUES = """
    SELECT DISTINCT task_queue, graph_key FROM tasks WHERE task_queue = ANY(%(queues)s) AND visible_at <= now()
"""
SELECT_NEXT_READY_AT = """
    SELECT min(visible_at) FROM tasks WHERE task_queue = ANY(%(queues)s) AND wait_kind IS NULL
"""
TASK_STATE_COLUMNS = """
    SELECT t.run_id, t.step_index, t.attempt, t.node_id, t.graph_key, t.task_queue, t.failures, t.lease_owner,
           r.cancel_requested
      FROM tasks t JOIN runs r ON r.namespace = t.namespace AND r.run_id = t.run_id
"""
SELECT_TASK = TASK_STATE_COLUMNS + " WHERE t.namespace = %(namespace)s AND t.run_id = %(run_id)s"

EXTEND_LEASE = f"""
    UPDATE tasks SET visible_at = now() + %(lease)s WHERE {FENCE}
 RETURNING visible_at,
           (SELECT cancel_requested FROM runs r WHERE r.namespace = tasks.namespace AND r.run_id = tasks.run_id)
"""

# complete_step: checkpoint the step and move the task to the next one, as one statement. The
# step's logical time is the task's before the move; the `task` CTE reads it from the statement's
# snapshot, which holds the current step whenever the fence matches: the attempt that completes
# was handed out after the step began. (Were it missing, NOT NULL would fail the statement rather
# than lose the checkpoint.) The next task is leased at once to an eager worker (attempt 1), else
# it is ready now (attempt 0).
STEP_VALUES = """
    SELECT %(namespace)s, %(run_id)s, %(step_index)s, %(node_id)s, %(attempt)s, %(state)s, %(state_hash)s,
           %(output)s, %(next_key)s, %(next_node)s, (SELECT logical_time FROM task), %(started_at)s, now()
"""
INSERT_STEP = """
    INSERT INTO steps (namespace, run_id, step_index, node_id, attempt, state, state_hash, output, next_key,
                       next_node, logical_time, started_at, finished_at)
"""
CURRENT_TASK_TIME = "SELECT logical_time FROM tasks WHERE namespace = %(namespace)s AND run_id = %(run_id)s"
ADVANCE_TASK = f"""
    WITH task AS (
        {CURRENT_TASK_TIME}
    ), moved AS (
        UPDATE tasks
           SET step_index = step_index + 1, node_id = %(next_node)s, task_queue = %(next_queue)s,
               attempt = %(next_attempt)s, failures = 0, visible_at = now() + %(hold)s, lease_owner = %(owner)s,
               logical_time = now(), last_failure = NULL
         WHERE {FENCE} AND node_id = %(node_id)s AND graph_key = %(graph_key)s
     RETURNING visible_at, logical_time
    ), step AS (
        {INSERT_STEP} {STEP_VALUES} FROM moved
    )
    SELECT m.visible_at, m.logical_time, r.seed, r.cancel_requested, r.trace_context
      FROM moved m JOIN runs r ON r.namespace = %(namespace)s AND r.run_id = %(run_id)s
"""
# The last step: checkpoint it, drop the task and complete the run with the final state.
FINISH_RUN = f"""
    WITH task AS (
        {CURRENT_TASK_TIME}
    ), gone AS (
        DELETE FROM tasks WHERE {FENCE} AND node_id = %(node_id)s AND graph_key = %(graph_key)s RETURNING run_id
    ), step AS (
        {INSERT_STEP} {STEP_VALUES} FROM gone
    ), done AS (
        UPDATE runs SET status = %(completed)s, result = %(state)s, step_count = %(step_index)s + 1,
                        updated_at = now(), completed_at = now()
         WHERE namespace = %(namespace)s AND run_id = (SELECT run_id FROM gone)
    )
    SELECT run_id, now() FROM gone
"""
# Activity records riding on a step's last request, inserted from parallel arrays (activity_arrays).
# `{fenced}` joins them to a statement's CTE, so that a checkpoint stores them only if its fence matched.
RIDING_INSERT = f"""
    INSERT INTO activities (namespace, run_id, step_index, seq, kind, name, request_hash, result, error, attempt,
                            recorded_at)
    SELECT %(namespace)s, %(run_id)s, %(step_index)s, a.seq, a.kind, a.name, a.request_hash, a.result, a.error,
           %(attempt)s, now()
      FROM {{fenced}}unnest(%(act_seq)s::integer[], %(act_kind)s::text[], %(act_name)s::text[], %(act_hash)s::text[],
                  %(act_result)s::bytea[], %(act_error)s::text[]) AS a (seq, kind, name, request_hash, result, error)
    {ON_RECORD_CONFLICT}
"""
INSERT_RIDING_ACTIVITIES = RIDING_INSERT.format(fenced="")
RIDING_ACTIVITIES = "\n    ), acts AS (" + RIDING_INSERT + "    )\n"
ADVANCE_TASK_WITH_ACTIVITIES = ADVANCE_TASK.replace(
    "\n    )\n    SELECT m.visible_at", RIDING_ACTIVITIES.format(fenced="moved, ") + "    SELECT m.visible_at"
)
FINISH_RUN_WITH_ACTIVITIES = FINISH_RUN.replace(
    "\n    )\n    SELECT run_id, now() FROM gone",
    RIDING_ACTIVITIES.format(fenced="gone, ") + "    SELECT run_id, now() FROM gone",
)
assert ADVANCE_TASK_WITH_ACTIVITIES != ADVANCE_TASK, "the riding insert found no place in ADVANCE_TASK"
assert FINISH_RUN_WITH_ACTIVITIES != FINISH_RUN, "the riding insert found no place in FINISH_RUN"
SELECT_COMPLETED_STEP = """
    SELECT s.attempt, s.node_id, s.state_hash, s.output, s.next_key, r.status
      FROM steps s JOIN runs r ON r.namespace = s.namespace AND r.run_id = s.run_id
     WHERE s.namespace = %(namespace)s AND s.run_id = %(run_id)s AND s.step_index = %(step_index)s
"""
RETRY_TASK = f"""
    UPDATE tasks SET failures = failures + 1, lease_owner = NULL, visible_at = now() + %(delay)s,
                     last_failure = %(failure)s
     WHERE {FENCE}
"""
RELEASE_TASK = f"UPDATE tasks SET lease_owner = NULL, visible_at = now() WHERE {FENCE}"
# FailTask decides from the task as it is while holding its row, so the decision and its write are
# one transaction (a concurrent claim or cancel waits for it).
LOCK_FENCED_TASK_FOR_FAIL = f"""
    {TASK_STATE_COLUMNS}
     WHERE t.namespace = %(namespace)s AND t.run_id = %(run_id)s AND t.step_index = %(step_index)s
       AND t.attempt = %(attempt)s AND t.lease_owner = %(worker_id)s
       FOR UPDATE OF t
"""
FAIL_RUN = f"""
    WITH gone AS (
        DELETE FROM tasks WHERE {FENCE} RETURNING run_id
    )
    UPDATE runs SET status = %(status)s, failure = %(failure)s, step_count = %(step_index)s,
                    updated_at = now(), completed_at = now()
     WHERE namespace = %(namespace)s AND run_id = (SELECT run_id FROM gone)
"""


SELECT_ACTIVITIES = f"""
    SELECT {ACTIVITY_COLUMNS} FROM activities
     WHERE namespace = %(namespace)s AND run_id = %(run_id)s AND step_index = %(step_index)s ORDER BY seq
"""


async def load_activities(
    conn: AsyncConnection[TupleRow], namespace: str, run_id: str, step_index: int
) -> tuple[ActivityRecord, ...]:
    """A step's recorded activities, by seq (`namespace` as stored)."""
    cur = await conn.execute(SELECT_ACTIVITIES, {"namespace": namespace, "run_id": run_id, "step_index": step_index})
    return tuple(activity_from_row(row, same) for row in await cur.fetchall())


class PostgresTasks(PooledStatements):
    """The task-queue part of `PostgresStore`."""

    async def claim_task(
        self, *, task_queues: Sequence[str], graph_keys: Sequence[str], worker_id: str, lease: timedelta
    ) -> Task | None:
        """See `Store.claim_task`."""
        params = {
            "queues": list(task_queues),
            "graphs": list(graph_keys),
            "worker_id": worker_id,
            "lease": lease,
            "running": int(RunStatus.RUNNING),
            "pending": int(RunStatus.PENDING),
        }
        async with self._pool.connection() as conn:
            cur = await conn.execute(CLAIM_TASK, params)
            row = await cur.fetchone()
            if row is None:
                return None
            run_id, step_index, attempt, node_id, queue, key, logical_time, failures, expires, seed, state = row[:11]
            acted, cancelled, trace, lapsed, namespace = row[11:]
            if state is None:
                # The previous step committed after this statement's snapshot (see CLAIM_TASK).
                where = {"namespace": namespace, "run_id": run_id, "step_index": step_index - 1}
                cur = await conn.execute(SELECT_STEP_STATE, where)
                previous = await cur.fetchone()
                if previous is None:
                    raise RuntimeError(f"run {run_id} is at step {step_index} without a checkpoint of the one before")
                state = previous[0]
            # Only a retried or recovered step has records; the probe keeps the first attempt at one statement.
            activities = await load_activities(conn, namespace, run_id, step_index) if acted else ()
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
            logical_time=logical_time,
            seed=seed,
            lease_expires_at=expires,
            failures=failures,
            activities=activities,
            cancel_requested=cancelled,
            trace_context=trace_from_text(trace),
            previous_lease_expired=lapsed,
            worker_id=worker_id,
        )

    async def ready_queues(self, task_queues: Sequence[str]) -> set[tuple[str, str]]:
        """See `Store.ready_queues`."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(SELECT_READY_QUEUES, {"queues": list(task_queues)})
            return {(q, k) for q, k in await cur.fetchall()}

    async def next_ready_at(self, task_queues: Sequence[str]) -> datetime | None:
        """See `Store.next_ready_at`."""
        row = await self._fetchone(SELECT_NEXT_READY_AT, {"queues": list(task_queues)})
        return None if row is None else row[0]

    async def extend_lease(self, key: TaskKey, *, lease: timedelta) -> tuple[datetime, bool]:
        """See `Store.extend_lease`."""
        row = await self._fetchone(EXTEND_LEASE, {**fence(key), "lease": lease})
        if row is None:
            raise StaleLease(key.run_id, key.step_index, key.attempt)
        return row[0], row[1]

    async def complete_step(self, commit: Checkpoint) -> CompleteOutcome:
        """See `Store.complete_step`."""
        c, key = commit, commit.key
        params: dict[str, Any] = {
            **fence(key),
            "node_id": c.node_id,
            "graph_key": graph_key(key.namespace, c.graph_id, c.graph_version),
            "state": c.state,
            "state_hash": c.state_hash,
            "output": c.output,
            "next_key": c.next_key,
            "next_node": c.next_node,
            "started_at": c.started_at,
        }
        if c.activities:
            params.update(activity_arrays(c.activities))
        if c.next_node == END_NODE:
            params["completed"] = int(RunStatus.COMPLETED)
            finished = await self._fetchone(FINISH_RUN_WITH_ACTIVITIES if c.activities else FINISH_RUN, params)
            if finished is None:
                return await self._not_current(c)
            return CompleteOutcome(RunStatus.COMPLETED, finished_at=finished[1])
        params.update(
            next_queue=c.next_queue,
            next_attempt=1 if c.eager_worker else 0,
            hold=c.lease if c.eager_worker else timedelta(0),
            owner=c.eager_worker,
        )
        row = await self._fetchone(ADVANCE_TASK_WITH_ACTIVITIES if c.activities else ADVANCE_TASK, params)
        if row is None:
            return await self._not_current(c)
        if not c.eager_worker:
            return CompleteOutcome(RunStatus.RUNNING, enqueued=(c.next_queue, params["graph_key"]))
        expires, logical_time, seed, cancelled, trace = row
        next_task = c.leased_next_task(logical_time=logical_time, seed=seed, lease_expires_at=expires)
        next_task = replace(next_task, cancel_requested=cancelled, trace_context=trace_from_text(trace))
        return CompleteOutcome(RunStatus.RUNNING, next_task=next_task)

    async def _not_current(self, c: Checkpoint) -> CompleteOutcome:
        """A fenced write matched nothing: a re-send of a done step, or a stale attempt.

        A separate statement, so its snapshot sees a completion that the fenced write waited for.
        """
        key = c.key
        row = await self._fetchone(SELECT_COMPLETED_STEP, fence(key))
        if row is None or row[0] != key.attempt:
            raise StaleLease(key.run_id, key.step_index, key.attempt)
        if not c.same_as(node_id=row[1], state_hash=row[2], output=row[3], next_key=row[4]):
            raise FailedPrecondition(c.differs_message())
        return CompleteOutcome(RunStatus(row[5]), duplicate=True)

    async def get_task(self, namespace: Namespace, run_id: str) -> TaskState | None:
        """See `Store.get_task`."""
        row = await self._fetchone(SELECT_TASK, {"namespace": str(namespace), "run_id": run_id})
        return None if row is None else task_state_from_row(row)

    async def release_task(self, key: TaskKey) -> None:
        """See `Store.release_task`."""
        if await self._rowcount(RELEASE_TASK, fence(key)) == 0:
            raise StaleLease(key.run_id, key.step_index, key.attempt)

    async def fail_task(
        self, key: TaskKey, *, decide: FailDecider, activities: tuple[ActivityRecord, ...] = ()
    ) -> tuple[TaskState, FailDecision]:
        """See `Store.fail_task`."""
        async with self._pool.connection() as conn, conn.transaction():
            row = await (await conn.execute(LOCK_FENCED_TASK_FOR_FAIL, fence(key))).fetchone()
            if row is None:
                raise StaleLease(key.run_id, key.step_index, key.attempt)
            task = task_state_from_row(row)
            decision = decide(task)  # may refuse the request: the transaction then writes nothing
            if activities:
                await conn.execute(INSERT_RIDING_ACTIVITIES, {**fence(key), **activity_arrays(activities)})
            failure = json.dumps(decision.failure.to_json())
            if decision.end is AttemptEnd.RELEASE:
                await conn.execute(RELEASE_TASK, fence(key))
            elif decision.end is AttemptEnd.RETRY:
                await conn.execute(RETRY_TASK, {**fence(key), "delay": decision.delay, "failure": failure})
            else:
                status = RunStatus.CANCELLED if decision.end is AttemptEnd.CANCEL else RunStatus.FAILED
                await conn.execute(FAIL_RUN, {**fence(key), "failure": failure, "status": int(status)})
        return task, decision
