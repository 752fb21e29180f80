"""Runs on Postgres: a run and its entry task, forks, termination, and reading runs and their steps."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from psycopg.rows import class_row

from cmo_server.domain import Failure, Namespace, NewFork, NewRun, Run, RunStatus, Step, graph_key
from cmo_server.store._pages import (
    decode_id_page_token,
    decode_run_page_token,
    encode_id_page_token,
    encode_run_page_token,
)
from cmo_server.store._protocol import RunPage
from cmo_server.store._rows import (
    ACTIVITY_COLUMNS,
    RUN_COLUMNS,
    fork_params,
    run_from_row,
    trace_to_text,
    with_activities,
)
from cmo_server.store.postgres._db import PooledStatements, same

__all__ = ["SELECT_RUN", "PostgresRuns"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_LATEST = datetime(9999, 12, 31, tzinfo=UTC)


def _to_us(at: datetime) -> int:
    """Microseconds since the epoch, exactly (page tokens match SQLite's)."""
    return (at - _EPOCH) // _MICROSECOND


def _from_us(us: int) -> datetime:
    try:
        return min(_EPOCH + us * _MICROSECOND, _LATEST)
    except OverflowError:
        return _LATEST if us > 0 else datetime.min.replace(tzinfo=UTC)


SELECT_RUN = RUN_COLUMNS + " WHERE r.namespace = %(namespace)s AND r.run_id = %(run_id)s"
# The entry task is inserted only when the run is: a second StartRun changes nothing.
INSERT_RUN_AND_ENTRY_TASK = """
    WITH created AS (
        INSERT INTO runs (namespace, run_id, graph_id, graph_version, status, input, seed, created_at, updated_at,
                          trace_context)
        VALUES (%(namespace)s, %(run_id)s, %(graph_id)s, %(graph_version)s, %(status)s, %(input)s, %(seed)s, now(),
                now(), %(trace_context)s)
        ON CONFLICT (namespace, run_id) DO NOTHING
        RETURNING run_id, created_at
    ), entry AS (
        INSERT INTO tasks (namespace, run_id, step_index, node_id, task_queue, graph_key, attempt, lease_owner,
                           visible_at, logical_time)
        SELECT %(namespace)s, run_id, 0, %(node_id)s, %(task_queue)s, %(graph_key)s, %(attempt)s, %(owner)s,
               created_at + %(hold)s, created_at
          FROM created
    )
    SELECT created_at FROM created
"""
# A fork: the new run (PENDING), the source's steps and activities up to from_step, the next task.
INSERT_FORK_RUN = """
    INSERT INTO runs (namespace, run_id, graph_id, graph_version, status, input, seed, created_at, updated_at,
                      parent_run_id, forked_from_step, trace_context)
    SELECT namespace, %(run_id)s, graph_id, graph_version, 1, input, seed, now(), now(), run_id, %(from_step)s,
           %(trace_context)s
      FROM runs WHERE namespace = %(namespace)s AND run_id = %(source)s
    ON CONFLICT (namespace, run_id) DO NOTHING
"""
COPY_STEPS = """
    INSERT INTO steps (namespace, run_id, step_index, node_id, attempt, state, state_hash, output, next_key,
                       next_node, logical_time, started_at, finished_at)
    SELECT namespace, %(run_id)s, step_index, node_id, attempt, state, state_hash, output, next_key, next_node,
           logical_time, started_at, finished_at
      FROM steps WHERE namespace = %(namespace)s AND run_id = %(source)s AND step_index <= %(from_step)s
"""
EDIT_FORKED_STATE = """
    UPDATE steps SET state = %(state)s, state_hash = %(state_hash)s
     WHERE namespace = %(namespace)s AND run_id = %(run_id)s AND step_index = %(from_step)s
"""
COPY_ACTIVITIES = """
    INSERT INTO activities (namespace, run_id, step_index, seq, kind, name, request_hash, result, error, attempt,
                            recorded_at)
    SELECT namespace, %(run_id)s, step_index, seq, kind, name, request_hash, result, error, attempt, recorded_at
      FROM activities WHERE namespace = %(namespace)s AND run_id = %(source)s AND step_index <= %(from_step)s
"""
INSERT_FORK_TASK = """
    INSERT INTO tasks (namespace, run_id, step_index, node_id, task_queue, graph_key, attempt, visible_at,
                       logical_time)
    SELECT namespace, %(run_id)s, %(from_step)s + 1, %(next_node)s, %(next_queue)s,
           namespace || '/' || graph_id || '@' || graph_version, 0, now(), now()
      FROM runs WHERE namespace = %(namespace)s AND run_id = %(run_id)s
"""
# Withdrawing the task row first makes terminate and a concurrent checkpoint exclusive: whichever
# takes the row wins, and the other finds it gone (the checkpoint is then a stale attempt).
TERMINATE_RUN = """
    WITH withdrawn AS (
        DELETE FROM tasks WHERE namespace = %(namespace)s AND run_id = %(run_id)s RETURNING step_index
    )
    UPDATE runs SET status = %(terminated)s, failure = %(failure)s, step_count = withdrawn.step_index,
                    updated_at = now(), completed_at = now()
      FROM withdrawn WHERE runs.namespace = %(namespace)s AND runs.run_id = %(run_id)s
"""


def list_runs_sql(*, by_graph: bool, by_status: bool) -> str:
    """ListRuns's statement for its filters, so that each can use its index in newest-first order.

    A filter spelt `(%(graph_id)s = '' OR ...)` in one statement for all of them would keep the
    planner from those indexes. A filter by status alone walks the namespace's newest runs. The
    statement leaves its LIMIT to `with_limit`.
    """
    filters = ("AND r.graph_id = %(graph_id)s " if by_graph else "") + (
        "AND r.status = %(status)s" if by_status else ""
    )
    return (
        RUN_COLUMNS
        + f"""
     WHERE r.namespace = %(namespace)s {filters}
       AND (r.created_at, r.run_id) < (%(before_at)s, %(before_id)s)
     ORDER BY r.created_at DESC, r.run_id DESC LIMIT {{limit}}
"""
    )


def with_limit(statement: str, limit: int) -> str:
    """A listing statement with its LIMIT written in, not a parameter.

    The sessions plan with `force_generic_plan` (see _store): a generic plan of a listing whose LIMIT
    is a parameter is made for an unknown number of rows, and on a million runs Postgres picked a
    parallel scan for it that took 16 ms where the same statement with `LIMIT 101` takes 2.
    """
    return statement.replace("{limit}", str(int(limit)))


LIST_RUNS = {(g, s): list_runs_sql(by_graph=g, by_status=s) for g in (False, True) for s in (False, True)}
"""ListRuns's statements by (graph filter, status filter)."""
# Through runs_by_id (namespace, run_id COLLATE "C"): in the order of the bytes, the ids that start
# with a prefix are one range, whatever the database's collation (in most, they are not).
SEARCH_RUNS = (
    RUN_COLUMNS
    + """
     WHERE r.namespace = %(namespace)s
       AND r.run_id COLLATE "C" >= %(prefix)s AND r.run_id COLLATE "C" < %(upper)s
       AND r.run_id COLLATE "C" > %(after)s
       AND (%(graph_id)s = '' OR r.graph_id = %(graph_id)s) AND (%(status)s = 0 OR r.status = %(status)s)
     ORDER BY r.run_id COLLATE "C" LIMIT {limit}
"""
)
SELECT_STEP_ACTIVITIES = f"""
    SELECT step_index, {ACTIVITY_COLUMNS} FROM activities
     WHERE namespace = %(namespace)s AND run_id = %(run_id)s AND step_index BETWEEN %(first)s AND %(last)s
     ORDER BY step_index, seq
"""
SELECT_STEPS = """
    SELECT run_id, step_index, node_id, attempt, state, state_hash, output, next_key, next_node,
           logical_time, started_at, finished_at
      FROM steps WHERE namespace = %(namespace)s AND run_id = %(run_id)s AND step_index > %(after)s
     ORDER BY step_index LIMIT %(limit)s
"""


class PostgresRuns(PooledStatements):
    """The runs part of `PostgresStore`."""

    async def create_run(self, run: NewRun) -> tuple[Run, bool]:
        """See `Store.create_run`."""
        status = RunStatus.RUNNING if run.lease_to else RunStatus.PENDING
        params = {
            "namespace": str(run.namespace),
            "run_id": run.run_id,
            "graph_id": run.graph_id,
            "graph_version": run.graph_version,
            "status": int(status),
            "attempt": 1 if run.lease_to else 0,
            "owner": run.lease_to,
            "hold": run.lease if run.lease_to else timedelta(0),
            "input": run.input,
            "seed": run.seed,
            "node_id": run.entry_node,
            "task_queue": run.entry_queue,
            "graph_key": graph_key(run.namespace, run.graph_id, run.graph_version),
            "trace_context": trace_to_text(run.trace_context),
        }
        row = await self._fetchone(INSERT_RUN_AND_ENTRY_TASK, params)
        if row is None:
            # ON CONFLICT waited for the other insert to commit, so the run is there to read.
            existing = await self.get_run(run.namespace, run.run_id)
            assert existing is not None
            return existing, False
        created_at: datetime = row[0]
        created = Run(
            namespace=run.namespace,
            run_id=run.run_id,
            graph_id=run.graph_id,
            graph_version=run.graph_version,
            status=status,
            input=run.input,
            seed=run.seed,
            step_count=0,
            current_node=run.entry_node,
            created_at=created_at,
            updated_at=created_at,
        )
        return created, True

    async def fork_run(self, fork: NewFork) -> tuple[Run, bool]:
        """See `Store.fork_run`."""
        params = fork_params(fork)
        async with self._pool.connection() as conn, conn.transaction():
            created = (await conn.execute(INSERT_FORK_RUN, params)).rowcount == 1
            if created:
                await conn.execute(COPY_STEPS, params)
                if fork.state is not None:
                    await conn.execute(EDIT_FORKED_STATE, params)
                await conn.execute(COPY_ACTIVITIES, params)
                await conn.execute(INSERT_FORK_TASK, params)
        run = await self.get_run(fork.namespace, fork.run_id)
        assert run is not None
        return run, created

    async def terminate_run(self, namespace: Namespace, run_id: str, *, failure: Failure) -> Run | None:
        """See `Store.terminate_run`."""
        params = {
            "namespace": str(namespace),
            "run_id": run_id,
            "terminated": int(RunStatus.TERMINATED),
            "failure": json.dumps(failure.to_json()),
        }
        async with self._pool.connection() as conn:
            await conn.execute(TERMINATE_RUN, params)
        return await self.get_run(namespace, run_id)

    async def get_run(self, namespace: Namespace, run_id: str) -> Run | None:
        """See `Store.get_run`."""
        row = await self._fetchone(SELECT_RUN, {"namespace": str(namespace), "run_id": run_id})
        return None if row is None else run_from_row(row, same)

    async def list_runs(
        self,
        namespace: Namespace,
        *,
        graph_id: str = "",
        status: RunStatus | None = None,
        limit: int = 100,
        page_token: str = "",
        id_prefix: str = "",
    ) -> RunPage:
        """See `Store.list_runs`."""
        if id_prefix:
            return await self._search_runs(namespace, id_prefix, graph_id, int(status or 0), limit, page_token)
        before_us, before_id = decode_run_page_token(page_token) if page_token else (0, "")
        params = {
            "namespace": str(namespace),
            "graph_id": graph_id,
            "status": int(status or 0),
            "before_at": _from_us(before_us) if page_token else _LATEST,
            "before_id": before_id or "\U0010ffff",
        }
        async with self._pool.connection() as conn:
            cur = await conn.execute(with_limit(LIST_RUNS[bool(graph_id), bool(status)], limit + 1), params)
            rows = await cur.fetchall()
        runs = [run_from_row(r, same) for r in rows[:limit]]
        token = encode_run_page_token(_to_us(rows[limit - 1][8]), rows[limit - 1][0]) if len(rows) > limit else ""
        return runs, token

    async def _search_runs(
        self, namespace: Namespace, prefix: str, graph_id: str, status: int, limit: int, page_token: str
    ) -> RunPage:
        params = {
            "namespace": str(namespace),
            "prefix": prefix,
            "upper": prefix + "\U0010ffff",
            "after": decode_id_page_token(page_token) if page_token else "",
            "graph_id": graph_id,
            "status": status,
        }
        async with self._pool.connection() as conn:
            cur = await conn.execute(with_limit(SEARCH_RUNS, limit + 1), params)
            rows = await cur.fetchall()
        runs = [run_from_row(r, same) for r in rows[:limit]]
        return runs, encode_id_page_token(rows[limit - 1][0]) if len(rows) > limit else ""

    async def get_steps(self, namespace: Namespace, run_id: str, *, after: int = -1, limit: int = 1000) -> list[Step]:
        """See `Store.get_steps`."""
        key = {"namespace": str(namespace), "run_id": run_id}
        async with self._pool.connection() as conn, conn.cursor(row_factory=class_row(Step)) as cur:
            await cur.execute(SELECT_STEPS, {**key, "after": after, "limit": limit})
            steps = await cur.fetchall()
            if not steps:
                return steps
            span = {**key, "first": steps[0].step_index, "last": steps[-1].step_index}
            rows = await (await conn.execute(SELECT_STEP_ACTIVITIES, span)).fetchall()
        return with_activities(steps, rows, same)
