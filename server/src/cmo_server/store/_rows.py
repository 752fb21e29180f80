"""Row -> value object conversions both SQL backends share (their SELECTs list the same columns)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from cmo_server.domain import (
    WAIT_KINDS,
    ActivityRecord,
    Artifact,
    Failure,
    Namespace,
    NewFork,
    Run,
    RunStatus,
    Step,
    TaskKey,
    TaskState,
    Wait,
    split_graph_key,
)
from cmo_server.progress import TaskSnapshot

__all__ = [
    "TASK_SNAPSHOT_COLUMNS",
    "task_snapshot_from_row",
    "ACTIVITY_COLUMNS",
    "ON_RECORD_CONFLICT",
    "REPLACEABLE_RECORD",
    "RUN_COLUMNS",
    "activity_arrays",
    "activity_from_row",
    "activity_params",
    "artifact_from_row",
    "fence",
    "fork_params",
    "run_from_row",
    "task_state_from_row",
    "trace_from_text",
    "trace_to_text",
    "with_activities",
]


def run_from_row(row: Sequence[Any], to_datetime: Callable[[Any], datetime]) -> Run:
    """A run from a row of its 21 columns, timestamps converted by `to_datetime`.

    The columns: run_id, graph_id, graph_version, status, input, seed, step_count, current_node,
    created_at, updated_at, completed_at, result, failure, parent_run_id, forked_from_step,
    wait_kind, wait_name, wait_until, wait_seq, cancel_requested, namespace (RUN_COLUMNS).
    """
    return Run(
        namespace=Namespace.parse(row[20]),
        run_id=row[0],
        graph_id=row[1],
        graph_version=row[2],
        status=RunStatus(row[3]),
        input=row[4],
        seed=row[5],
        step_count=row[6],
        current_node=row[7],
        created_at=to_datetime(row[8]),
        updated_at=to_datetime(row[9]),
        completed_at=None if row[10] is None else to_datetime(row[10]),
        result=row[11],
        failure=None if row[12] is None else Failure.from_json(json.loads(row[12])),
        parent_run_id=row[13] or "",
        forked_from_step=row[14] or 0,
        waiting=None
        if row[15] is None
        else Wait(
            kind=row[15],
            name=row[16],
            until=None if row[17] is None else to_datetime(row[17]),
            step_index=row[6],
            seq=row[18],
        ),
        cancel_requested=bool(row[19]),
    )


RUN_COLUMNS = """
    SELECT r.run_id, r.graph_id, r.graph_version, r.status, r.input, r.seed,
           coalesce(t.step_index, r.step_count), coalesce(t.node_id, ''),
           r.created_at, r.updated_at, r.completed_at, r.result, r.failure, r.parent_run_id,
           r.forked_from_step, t.wait_kind, t.wait_name, t.wait_until, t.wait_seq, r.cancel_requested, r.namespace
      FROM runs r LEFT JOIN tasks t ON t.namespace = r.namespace AND t.run_id = r.run_id
"""
"""The run joined with its current task, which carries the live step count and node and the wait:
the columns `run_from_row` reads."""


ACTIVITY_COLUMNS = "seq, kind, name, request_hash, result, error, attempt, recorded_at"
"""The columns `activity_from_row` reads, in order."""

_WAIT_KIND_LIST = ", ".join(f"'{kind}'" for kind in WAIT_KINDS)
REPLACEABLE_RECORD = f"activities.error IS NOT NULL AND activities.kind NOT IN ({_WAIT_KIND_LIST})"
"""An `activities` row that a record of a newer attempt at its seq replaces (with the attempt check).

A node retry runs an activity that failed again, so the step keeps the new outcome; a success is
never replaced, nor a wait's outcome, nor a record of the same attempt (the first one wins).
"""
ON_RECORD_CONFLICT = f"""
    ON CONFLICT (namespace, run_id, step_index, seq) DO UPDATE
       SET kind = excluded.kind, name = excluded.name, request_hash = excluded.request_hash,
           result = excluded.result, error = excluded.error, attempt = excluded.attempt,
           recorded_at = excluded.recorded_at
     WHERE {REPLACEABLE_RECORD} AND activities.attempt < excluded.attempt
"""
"""How an activity insert meets the record already at its seq: kept, unless `REPLACEABLE_RECORD`."""


def fence(key: TaskKey) -> dict[str, Any]:
    """The named parameters of a store's FENCE: the attempt a worker write names, and the worker."""
    return {
        "namespace": str(key.namespace),
        "run_id": key.run_id,
        "step_index": key.step_index,
        "attempt": key.attempt,
        "worker_id": key.worker_id,
    }


def task_state_from_row(row: Sequence[Any]) -> TaskState:
    """A task row as both stores' SELECT_TASK read it.

    The columns: run_id, step_index, attempt, node_id, graph_key, task_queue, failures,
    lease_owner, cancel_requested.
    """
    namespace, graph_id, version = split_graph_key(row[4])
    return TaskState(
        namespace=namespace,
        run_id=row[0],
        step_index=row[1],
        attempt=row[2],
        node_id=row[3],
        graph_id=graph_id,
        graph_version=version,
        task_queue=row[5],
        failures=row[6],
        lease_owner=row[7],
        cancel_requested=bool(row[8]),
    )


def artifact_from_row(row: Sequence[Any], to_datetime: Callable[[Any], datetime]) -> Artifact:
    """An artifact record from a row of namespace, run_id, digest, size, media_type, created_at."""
    return Artifact(
        namespace=Namespace.parse(row[0]),
        run_id=row[1],
        sha256=row[2],
        size=row[3],
        media_type=row[4],
        created_at=to_datetime(row[5]),
    )


def activity_from_row(row: Sequence[Any], to_datetime: Callable[[Any], datetime]) -> ActivityRecord:
    """An activity record from a row of ACTIVITY_COLUMNS."""
    return ActivityRecord(
        seq=row[0],
        kind=row[1],
        name=row[2],
        request_hash=row[3],
        result=row[4],
        error=None if row[5] is None else Failure.from_json(json.loads(row[5])),
        attempt=row[6],
        recorded_at=to_datetime(row[7]),
    )


TASK_SNAPSHOT_COLUMNS = """run_id, step_index, node_id, task_queue, graph_key, attempt, failures, visible_at,
    lease_owner, last_failure, wait_kind, wait_name, wait_until"""
"""The columns `task_snapshot_from_row` reads, in order (each backend may wrap visible_at)."""


def task_snapshot_from_row(
    row: Sequence[Any], to_datetime: Callable[[Any], datetime | None], now: datetime
) -> TaskSnapshot:
    """A run's task as it stands, from a row of TASK_SNAPSHOT_COLUMNS.

    `to_datetime` reads a time column (None for a task waiting with no time set).
    """
    return TaskSnapshot(
        run_id=row[0],
        step_index=row[1],
        node_id=row[2],
        task_queue=row[3],
        graph_key=row[4],
        attempt=row[5],
        failures=row[6],
        visible_at=to_datetime(row[7]),
        lease_owner=row[8],
        last_failure=None if row[9] is None else Failure.from_json(json.loads(row[9])),
        wait_kind=row[10],
        wait_name=row[11],
        wait_until=to_datetime(row[12]),
        now=now,
    )


def activity_params(namespace: Namespace, run_id: str, step_index: int, activity: ActivityRecord) -> dict[str, Any]:
    """Named parameters of an activity insert (without recorded_at, which the store sets)."""
    return {
        "namespace": str(namespace),
        "run_id": run_id,
        "step_index": step_index,
        "seq": activity.seq,
        "kind": activity.kind,
        "name": activity.name,
        "request_hash": activity.request_hash,
        "result": activity.result,
        "error": None if activity.error is None else json.dumps(activity.error.to_json()),
        "attempt": activity.attempt,
    }


def with_activities(
    steps: list[Step], rows: Sequence[Sequence[Any]], to_datetime: Callable[[Any], datetime]
) -> list[Step]:
    """Attach activity rows (step_index followed by ACTIVITY_COLUMNS) to their steps."""
    by_step: dict[int, list[ActivityRecord]] = {}
    for row in rows:
        by_step.setdefault(row[0], []).append(activity_from_row(row[1:], to_datetime))
    return [replace(s, activities=tuple(by_step[s.step_index])) if s.step_index in by_step else s for s in steps]


def trace_to_text(context: dict[str, str]) -> str | None:
    """A trace context as stored: a JSON object, or NULL when there is none."""
    return json.dumps(context, sort_keys=True) if context else None


def trace_from_text(text: str | None) -> dict[str, str]:
    """A stored trace context back as a dict (empty for NULL)."""
    return {} if not text else dict(json.loads(text))


def fork_params(fork: NewFork) -> dict[str, Any]:
    """Named parameters of the statements that create a fork."""
    return {
        "namespace": str(fork.namespace),
        "trace_context": trace_to_text(fork.trace_context),
        "run_id": fork.run_id,
        "source": fork.source_run_id,
        "from_step": fork.from_step,
        "state": fork.state,
        "state_hash": fork.state_hash,
        "next_node": fork.next_node,
        "next_queue": fork.next_queue,
    }


def activity_arrays(activities: Sequence[ActivityRecord]) -> dict[str, list[Any]]:
    """Activity records as parallel arrays, for one INSERT … SELECT FROM unnest(…)."""
    return {
        "act_seq": [a.seq for a in activities],
        "act_kind": [a.kind for a in activities],
        "act_name": [a.name for a in activities],
        "act_hash": [a.request_hash for a in activities],
        "act_result": [a.result for a in activities],
        "act_error": [None if a.error is None else json.dumps(a.error.to_json()) for a in activities],
    }
