"""Runs on SQLite: a run and its entry task, forks, termination, and reading runs and their steps."""

from __future__ import annotations

import json
import sqlite3

from cmo_server.domain import Failure, Namespace, NewFork, NewRun, Run, RunStatus, Step, graph_key
from cmo_server.store._pages import encode_id_page_token, encode_run_page_token
from cmo_server.store._protocol import RunPage
from cmo_server.store._rows import (
    ACTIVITY_COLUMNS,
    RUN_COLUMNS,
    fork_params,
    run_from_row,
    trace_to_text,
    with_activities,
)
from cmo_server.store.sqlite._db import Transaction, dt, now_us, run_key, us

__all__ = ["create_run", "fork_run", "get_run", "get_steps", "list_runs", "terminate_run"]

INSERT_RUN = """
    INSERT INTO runs (namespace, run_id, graph_id, graph_version, status, input, seed, created_at, updated_at,
                      trace_context)
    VALUES (:namespace, :run_id, :graph_id, :graph_version, :status, :input, :seed, :now, :now, :trace_context)
    ON CONFLICT (namespace, run_id) DO NOTHING
"""
INSERT_TASK = """
    INSERT INTO tasks (namespace, run_id, step_index, node_id, task_queue, graph_key, attempt, lease_owner,
                       visible_at, logical_time)
    VALUES (:namespace, :run_id, 0, :node_id, :task_queue, :graph_key, :attempt, :owner, :visible_at, :now)
"""
# A fork: the new run (PENDING), the source's steps and activities up to from_step, the next task.
INSERT_FORK_RUN = """
    INSERT INTO runs (namespace, run_id, graph_id, graph_version, status, input, seed, created_at, updated_at,
                      parent_run_id, forked_from_step, trace_context)
    SELECT namespace, :run_id, graph_id, graph_version, 1, input, seed, :now, :now, run_id, :from_step,
           :trace_context
      FROM runs WHERE namespace = :namespace AND run_id = :source
"""
COPY_STEPS = """
    INSERT INTO steps (namespace, run_id, step_index, node_id, attempt, state, state_hash, output, next_key,
                       next_node, logical_time, started_at, finished_at)
    SELECT namespace, :run_id, step_index, node_id, attempt, state, state_hash, output, next_key, next_node,
           logical_time, started_at, finished_at
      FROM steps WHERE namespace = :namespace AND run_id = :source AND step_index <= :from_step
"""
EDIT_FORKED_STATE = """
    UPDATE steps SET state = :state, state_hash = :state_hash
     WHERE namespace = :namespace AND run_id = :run_id AND step_index = :from_step
"""
COPY_ACTIVITIES = """
    INSERT INTO activities (namespace, run_id, step_index, seq, kind, name, request_hash, result, error, attempt,
                            recorded_at)
    SELECT namespace, :run_id, step_index, seq, kind, name, request_hash, result, error, attempt, recorded_at
      FROM activities WHERE namespace = :namespace AND run_id = :source AND step_index <= :from_step
"""
INSERT_FORK_TASK = """
    INSERT INTO tasks (namespace, run_id, step_index, node_id, task_queue, graph_key, attempt, visible_at,
                       logical_time)
    SELECT namespace, :run_id, :from_step + 1, :next_node, :next_queue,
           namespace || '/' || graph_id || '@' || graph_version, 0, :now, :now
      FROM runs WHERE namespace = :namespace AND run_id = :run_id
"""
WITHDRAW_TASK = "DELETE FROM tasks WHERE namespace = :namespace AND run_id = :run_id RETURNING step_index"
TERMINATE_RUN = """
    UPDATE runs SET status = 7, failure = :failure, step_count = :step_count, updated_at = :now, completed_at = :now
     WHERE namespace = :namespace AND run_id = :run_id
"""
SELECT_RUN = RUN_COLUMNS + " WHERE r.namespace = :namespace AND r.run_id = :run_id"


def _list_runs_sql(*, by_graph: bool, by_status: bool) -> str:
    # One statement per combination of filters, so that each can use its index (see Postgres's).
    filters = ("AND r.graph_id = :graph_id " if by_graph else "") + ("AND r.status = :status" if by_status else "")
    return (
        RUN_COLUMNS
        + f"""
     WHERE r.namespace = :namespace {filters}
       AND (r.created_at, r.run_id) < (:before_us, :before_id)
     ORDER BY r.created_at DESC, r.run_id DESC LIMIT :limit
"""
    )


LIST_RUNS = {(g, s): _list_runs_sql(by_graph=g, by_status=s) for g in (False, True) for s in (False, True)}
# Through the primary key (namespace, run_id), whose BINARY collation is the order of the bytes:
# the ids that start with a prefix are one range of it.
SEARCH_RUNS = (
    RUN_COLUMNS
    + """
     WHERE r.namespace = :namespace AND r.run_id >= :prefix AND r.run_id < :upper AND r.run_id > :after
       AND (:graph_id = '' OR r.graph_id = :graph_id) AND (:status = 0 OR r.status = :status)
     ORDER BY r.run_id LIMIT :limit
"""
)
"""ListRuns's statements by (graph filter, status filter)."""
SELECT_STEP_ACTIVITIES = f"""
    SELECT step_index, {ACTIVITY_COLUMNS} FROM activities
     WHERE namespace = :namespace AND run_id = :run_id AND step_index BETWEEN :first AND :last
     ORDER BY step_index, seq
"""
SELECT_STEPS = """
    SELECT run_id, step_index, node_id, attempt, state, state_hash, output, next_key, next_node,
           logical_time, started_at, finished_at
      FROM steps WHERE namespace = :namespace AND run_id = :run_id AND step_index > :after
     ORDER BY step_index LIMIT :limit
"""


def create_run(conn: sqlite3.Connection, run: NewRun) -> tuple[Run, bool]:
    """See `Store.create_run`."""
    now = now_us()
    params = {
        **run_key(run.namespace, run.run_id),
        "graph_id": run.graph_id,
        "graph_version": run.graph_version,
        "status": int(RunStatus.RUNNING if run.lease_to else RunStatus.PENDING),
        "attempt": 1 if run.lease_to else 0,
        "owner": run.lease_to,
        "visible_at": now + (us(run.lease) if run.lease_to else 0),
        "input": run.input,
        "seed": run.seed,
        "now": now,
        "node_id": run.entry_node,
        "task_queue": run.entry_queue,
        "graph_key": graph_key(run.namespace, run.graph_id, run.graph_version),
        "trace_context": trace_to_text(run.trace_context),
    }
    with Transaction(conn):
        created = conn.execute(INSERT_RUN, params).rowcount == 1
        if created:
            conn.execute(INSERT_TASK, params)
    stored = get_run(conn, run.namespace, run.run_id)
    assert stored is not None
    return stored, created


def fork_run(conn: sqlite3.Connection, fork: NewFork) -> tuple[Run, bool]:
    """See `Store.fork_run`."""
    params = {**fork_params(fork), "now": now_us()}
    with Transaction(conn):
        existing = get_run(conn, fork.namespace, fork.run_id)
        if existing is not None:
            return existing, False
        conn.execute(INSERT_FORK_RUN, params)
        conn.execute(COPY_STEPS, params)
        if fork.state is not None:
            conn.execute(EDIT_FORKED_STATE, params)
        conn.execute(COPY_ACTIVITIES, params)
        conn.execute(INSERT_FORK_TASK, params)
        created = get_run(conn, fork.namespace, fork.run_id)
    assert created is not None
    return created, True


def terminate_run(conn: sqlite3.Connection, namespace: Namespace, run_id: str, failure: Failure) -> Run | None:
    """See `Store.terminate_run`."""
    run = run_key(namespace, run_id)
    with Transaction(conn):
        withdrawn = conn.execute(WITHDRAW_TASK, run).fetchone()
        if withdrawn is not None:
            params = {"failure": json.dumps(failure.to_json()), "step_count": withdrawn[0], "now": now_us()}
            conn.execute(TERMINATE_RUN, {**params, **run})
    return get_run(conn, namespace, run_id)


def get_run(conn: sqlite3.Connection, namespace: Namespace, run_id: str) -> Run | None:
    """See `Store.get_run`."""
    row = conn.execute(SELECT_RUN, run_key(namespace, run_id)).fetchone()
    return None if row is None else run_from_row(row, dt)


def list_runs(
    conn: sqlite3.Connection, namespace: Namespace, graph_id: str, status: int, limit: int, before: tuple[int, str]
) -> RunPage:
    """See `Store.list_runs`."""
    params = {
        "namespace": str(namespace),
        "graph_id": graph_id,
        "status": status,
        "before_us": before[0],
        "before_id": before[1] if before[1] else "\U0010ffff",
        "limit": limit + 1,
    }
    rows = conn.execute(LIST_RUNS[bool(graph_id), bool(status)], params).fetchall()
    runs = [run_from_row(r, dt) for r in rows[:limit]]
    token = encode_run_page_token(rows[limit - 1][8], rows[limit - 1][0]) if len(rows) > limit else ""
    return runs, token


def search_runs(
    conn: sqlite3.Connection, namespace: Namespace, prefix: str, graph_id: str, status: int, limit: int, after: str
) -> RunPage:
    """See `Store.list_runs` with an id prefix."""
    params = {
        "namespace": str(namespace),
        "prefix": prefix,
        "upper": prefix + "\U0010ffff",
        "after": after,
        "graph_id": graph_id,
        "status": status,
        "limit": limit + 1,
    }
    rows = conn.execute(SEARCH_RUNS, params).fetchall()
    runs = [run_from_row(r, dt) for r in rows[:limit]]
    return runs, encode_id_page_token(rows[limit - 1][0]) if len(rows) > limit else ""


def get_steps(conn: sqlite3.Connection, namespace: Namespace, run_id: str, after: int, limit: int) -> list[Step]:
    """See `Store.get_steps`."""
    run = run_key(namespace, run_id)
    steps = [
        Step(
            run_id=r[0],
            step_index=r[1],
            node_id=r[2],
            attempt=r[3],
            state=r[4],
            state_hash=r[5],
            output=r[6],
            next_key=r[7],
            next_node=r[8],
            logical_time=dt(r[9]),
            started_at=dt(r[10]),
            finished_at=dt(r[11]),
        )
        for r in conn.execute(SELECT_STEPS, {**run, "after": after, "limit": limit})
    ]
    if not steps:
        return steps
    span = {**run, "first": steps[0].step_index, "last": steps[-1].step_index}
    rows = conn.execute(SELECT_STEP_ACTIVITIES, span).fetchall()
    return with_activities(steps, rows, dt)
