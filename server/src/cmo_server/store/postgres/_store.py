"""The Postgres backend: a pool of autocommit connections, one statement per state transition.

Each write is a single SQL statement (data-modifying CTEs with RETURNING) run in autocommit mode:
one statement is one short transaction and costs one round trip, with no BEGIN or COMMIT of its
own. A second, read-only statement follows only off the hot path (a re-sent StartRun or
registration, a claim that raced a completion, a fenced write that matched nothing). Times come
from the database's `now()`, never from Python.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import AsyncConnection
from psycopg.pq import ConnStatus
from psycopg.rows import TupleRow, class_row
from psycopg_pool import AsyncConnectionPool

from cmo_server.domain import Failure, GraphSpec, NewFork, NewRun, Run, RunStatus, Step, graph_key
from cmo_server.errors import AlreadyExists
from cmo_server.store._pages import (
    decode_graph_page_token,
    decode_run_page_token,
    encode_graph_page_token,
    encode_run_page_token,
)
from cmo_server.store._protocol import GraphPage, RunPage
from cmo_server.store._rows import (
    ACTIVITY_COLUMNS,
    RUN_COLUMNS,
    fork_params,
    run_from_row,
    trace_to_text,
    with_activities,
)
from cmo_server.store.postgres._activities import PostgresActivities
from cmo_server.store.postgres._artifacts import PostgresArtifacts
from cmo_server.store.postgres._migrate import migrate
from cmo_server.store.postgres._notify import PostgresNotifications
from cmo_server.store.postgres._prune import PostgresRetention
from cmo_server.store.postgres._stats import PostgresStats
from cmo_server.store.postgres._tasks import Pool, PostgresTasks, same
from cmo_server.store.postgres._waits import SELECT_RUN, PostgresWaits

__all__ = ["PostgresStore"]

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


# -- graphs ---------------------------------------------------------------------------------------

INSERT_GRAPH = """
    INSERT INTO graphs (graph_id, version, definition, registered_at)
    VALUES (%(graph_id)s, %(version)s, %(definition)s, now())
    ON CONFLICT (graph_id, version) DO NOTHING
"""
SELECT_GRAPH_DEFINITION = "SELECT definition FROM graphs WHERE graph_id = %(graph_id)s AND version = %(version)s"
SELECT_NEWEST_GRAPH = "SELECT definition FROM graphs WHERE graph_id = %(graph_id)s ORDER BY version DESC LIMIT 1"
LIST_GRAPHS = """
    SELECT definition FROM graphs
     WHERE (%(graph_id)s = '' OR graph_id = %(graph_id)s) AND (graph_id, version) > (%(after_id)s, %(after_version)s)
     ORDER BY graph_id, version LIMIT %(limit)s
"""

# -- runs -----------------------------------------------------------------------------------------

# The entry task is inserted only when the run is: a second StartRun changes nothing.
INSERT_RUN_AND_ENTRY_TASK = """
    WITH created AS (
        INSERT INTO runs (run_id, graph_id, graph_version, status, input, seed, created_at, updated_at,
                          trace_context)
        VALUES (%(run_id)s, %(graph_id)s, %(graph_version)s, %(status)s, %(input)s, %(seed)s, now(), now(),
                %(trace_context)s)
        ON CONFLICT (run_id) DO NOTHING
        RETURNING run_id, created_at
    ), entry AS (
        INSERT INTO tasks (run_id, step_index, node_id, task_queue, graph_key, attempt, lease_owner, visible_at,
                           logical_time)
        SELECT run_id, 0, %(node_id)s, %(task_queue)s, %(graph_key)s, %(attempt)s, %(owner)s, created_at + %(hold)s,
               created_at
          FROM created
    )
    SELECT created_at FROM created
"""
# A fork: the new run (PENDING), the source's steps and activities up to from_step, the next task.
INSERT_FORK_RUN = """
    INSERT INTO runs (run_id, graph_id, graph_version, status, input, seed, created_at, updated_at, parent_run_id,
                      forked_from_step, trace_context)
    SELECT %(run_id)s, graph_id, graph_version, 1, input, seed, now(), now(), run_id, %(from_step)s,
           %(trace_context)s
      FROM runs WHERE run_id = %(source)s
    ON CONFLICT (run_id) DO NOTHING
"""
COPY_STEPS = """
    INSERT INTO steps (run_id, step_index, node_id, attempt, state, state_hash, output, next_key, next_node,
                       logical_time, started_at, finished_at)
    SELECT %(run_id)s, step_index, node_id, attempt, state, state_hash, output, next_key, next_node, logical_time,
           started_at, finished_at
      FROM steps WHERE run_id = %(source)s AND step_index <= %(from_step)s
"""
EDIT_FORKED_STATE = """
    UPDATE steps SET state = %(state)s, state_hash = %(state_hash)s
     WHERE run_id = %(run_id)s AND step_index = %(from_step)s
"""
COPY_ACTIVITIES = """
    INSERT INTO activities (run_id, step_index, seq, kind, name, request_hash, result, error, attempt, recorded_at)
    SELECT %(run_id)s, step_index, seq, kind, name, request_hash, result, error, attempt, recorded_at
      FROM activities WHERE run_id = %(source)s AND step_index <= %(from_step)s
"""
INSERT_FORK_TASK = """
    INSERT INTO tasks (run_id, step_index, node_id, task_queue, graph_key, attempt, visible_at, logical_time)
    SELECT %(run_id)s, %(from_step)s + 1, %(next_node)s, %(next_queue)s, graph_id || '@' || graph_version, 0, now(),
           now()
      FROM runs WHERE run_id = %(run_id)s
"""
# Withdrawing the task row first makes terminate and a concurrent checkpoint exclusive: whichever
# takes the row wins, and the other finds it gone (the checkpoint is then a stale attempt).
TERMINATE_RUN = """
    WITH withdrawn AS (
        DELETE FROM tasks WHERE run_id = %(run_id)s RETURNING step_index
    )
    UPDATE runs SET status = %(terminated)s, failure = %(failure)s, step_count = withdrawn.step_index,
                    updated_at = now(), completed_at = now()
      FROM withdrawn WHERE runs.run_id = %(run_id)s
"""
LIST_RUNS = (
    RUN_COLUMNS
    + """
     WHERE (%(graph_id)s = '' OR r.graph_id = %(graph_id)s) AND (%(status)s = 0 OR r.status = %(status)s)
       AND (r.created_at, r.run_id) < (%(before_at)s, %(before_id)s)
     ORDER BY r.created_at DESC, r.run_id DESC LIMIT %(limit)s
"""
)
SELECT_STEP_ACTIVITIES = f"""
    SELECT step_index, {ACTIVITY_COLUMNS} FROM activities
     WHERE run_id = %(run_id)s AND step_index BETWEEN %(first)s AND %(last)s ORDER BY step_index, seq
"""
SELECT_STEPS = """
    SELECT run_id, step_index, node_id, attempt, state, state_hash, output, next_key, next_node,
           logical_time, started_at, finished_at
      FROM steps WHERE run_id = %(run_id)s AND step_index > %(after)s ORDER BY step_index LIMIT %(limit)s
"""


# Timestamps come back in UTC, as from the SQLite store. Generic plans: every statement here is
# a keyed lookup whose best plan does not depend on its parameters, but Postgres judged the CTE
# statements' generic plans too costly and re-planned them on each call: forcing generic plans
# took a claim from 0.65 to 0.45 ms (p50, one caller, fsync on).
CONFIGURE_SESSION = """
    SELECT set_config('TimeZone', 'UTC', false), set_config('plan_cache_mode', 'force_generic_plan', false)
"""


async def _configure(conn: AsyncConnection[TupleRow], *, own_pids: set[int]) -> None:
    # Prepare every statement on its first use: the server then skips parsing and planning it.
    # Measured: create_run, claim_task and complete_step each took 0.05-0.2 ms less (p50).
    conn.prepare_threshold = 0
    await conn.execute(CONFIGURE_SESSION, prepare=False)
    own_pids.add(conn.info.backend_pid)  # its notifications are this server's own (see _notify)


async def _check_connection(conn: AsyncConnection[TupleRow]) -> None:
    """The pool's check of a connection it hands out, without a round trip to the server.

    A server that stops or restarts sends each session a FATAL message and closes the socket; two
    non-blocking reads take in the message and then the end of the stream, which makes libpq mark
    the connection bad, and the pool replaces it. Measured against
    `AsyncConnectionPool.check_connection` (an empty query) on this 2-core machine, with 16
    concurrent callers doing 3-step runs: that check cost ~190 µs of Python CPU per store call
    (~450 against ~255 µs) and cut throughput from ~690 to ~330-450 runs/s; this one costs
    nothing measurable. Both gave 0 failed calls after `pg_ctl restart -m fast` of an idle pool
    (without a check: one failed call per pooled connection).
    """
    pgconn = conn.pgconn
    if conn.closed or pgconn.status != ConnStatus.OK:
        raise psycopg.OperationalError("the connection is closed")
    for _ in range(2):
        pgconn.consume_input()  # raises OperationalError once the server has closed the socket
    if pgconn.status != ConnStatus.OK:
        raise psycopg.OperationalError("the server closed the connection")


class PostgresStore(
    PostgresTasks,
    PostgresActivities,
    PostgresArtifacts,
    PostgresWaits,
    PostgresNotifications,
    PostgresStats,
    PostgresRetention,
):
    """`Store` on a Postgres database."""

    def __init__(self, pool: Pool, *, url: str, own_pids: set[int] | None = None) -> None:
        self._pool = pool
        self._url = url
        self._own_pids = own_pids if own_pids is not None else set()
        self._closed = False

    @classmethod
    @asynccontextmanager
    async def open(cls, url: str, *, pool_size: int = 8) -> AsyncIterator[PostgresStore]:
        """Connect to the database at `url`, migrating it first; closes the pool on exit."""
        store = await cls.connect(url, pool_size=pool_size)
        try:
            yield store
        finally:
            await store.aclose()

    @classmethod
    async def connect(cls, url: str, *, pool_size: int = 8, timeout: float = 30.0) -> PostgresStore:
        """Migrate the database at `url` and open a pool of `pool_size` connections to it.

        The caller must `aclose()` the store. `timeout` bounds the wait for the pool's
        connections, at start and on each call.
        """
        await migrate(url, connect_timeout=timeout)
        own_pids: set[int] = set()
        pool: Pool = AsyncConnectionPool(
            url,
            min_size=pool_size,
            max_size=pool_size,
            open=False,
            kwargs={"autocommit": True},
            configure=functools.partial(_configure, own_pids=own_pids),
            check=_check_connection,
            timeout=timeout,
            name="cmo-store",
        )
        try:
            await pool.open(wait=True, timeout=timeout)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, url=url, own_pids=own_pids)

    async def ping(self) -> None:
        """See `Store.ping`."""
        async with self._pool.connection() as conn:
            await conn.execute("SELECT 1", prepare=False)

    async def aclose(self) -> None:
        """Close the pool; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._pool.close()

    # -- graphs -----------------------------------------------------------------------------------

    async def register_graph(self, graph: GraphSpec) -> bool:
        """See `Store.register_graph`."""
        params = {"graph_id": graph.graph_id, "version": graph.version, "definition": graph.definition_json().decode()}
        if await self._rowcount(INSERT_GRAPH, params) == 1:
            return True
        # Versions are immutable once stored, so reading the existing one after the insert is safe.
        row = await self._fetchone(SELECT_GRAPH_DEFINITION, params)
        assert row is not None, "a graph version is never deleted"
        if row[0] != params["definition"]:
            raise AlreadyExists(graph.conflict_message(json.loads(row[0])))
        return False

    async def get_graph(self, graph_id: str, version: int) -> GraphSpec | None:
        """See `Store.get_graph`."""
        if version == 0:
            row = await self._fetchone(SELECT_NEWEST_GRAPH, {"graph_id": graph_id})
        else:
            row = await self._fetchone(SELECT_GRAPH_DEFINITION, {"graph_id": graph_id, "version": version})
        return None if row is None else GraphSpec.from_json(json.loads(row[0]))

    async def list_graphs(self, *, graph_id: str = "", limit: int = 100, page_token: str = "") -> GraphPage:
        """See `Store.list_graphs`."""
        after_id, after_version = decode_graph_page_token(page_token) if page_token else ("", 0)
        params = {"graph_id": graph_id, "after_id": after_id, "after_version": after_version, "limit": limit + 1}
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(LIST_GRAPHS, params)).fetchall()
        graphs = [GraphSpec.from_json(json.loads(row[0])) for row in rows]
        last = graphs[limit - 1] if len(graphs) > limit else None
        return graphs[:limit], encode_graph_page_token(last.graph_id, last.version) if last else ""

    # -- runs -------------------------------------------------------------------------------------

    async def create_run(self, run: NewRun) -> tuple[Run, bool]:
        """See `Store.create_run`."""
        status = RunStatus.RUNNING if run.lease_to else RunStatus.PENDING
        params = {
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
            "graph_key": graph_key(run.graph_id, run.graph_version),
            "trace_context": trace_to_text(run.trace_context),
        }
        row = await self._fetchone(INSERT_RUN_AND_ENTRY_TASK, params)
        if row is None:
            # ON CONFLICT waited for the other insert to commit, so the run is there to read.
            existing = await self.get_run(run.run_id)
            assert existing is not None
            return existing, False
        created_at: datetime = row[0]
        created = Run(
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
        run = await self.get_run(fork.run_id)
        assert run is not None
        return run, created

    async def terminate_run(self, run_id: str, *, failure: Failure) -> Run | None:
        """See `Store.terminate_run`."""
        params = {"run_id": run_id, "terminated": int(RunStatus.TERMINATED), "failure": json.dumps(failure.to_json())}
        async with self._pool.connection() as conn:
            await conn.execute(TERMINATE_RUN, params)
        return await self.get_run(run_id)

    async def get_run(self, run_id: str) -> Run | None:
        """See `Store.get_run`."""
        row = await self._fetchone(SELECT_RUN, {"run_id": run_id})
        return None if row is None else run_from_row(row, same)

    async def list_runs(
        self, *, graph_id: str = "", status: RunStatus | None = None, limit: int = 100, page_token: str = ""
    ) -> RunPage:
        """See `Store.list_runs`."""
        before_us, before_id = decode_run_page_token(page_token) if page_token else (0, "")
        params = {
            "graph_id": graph_id,
            "status": int(status or 0),
            "before_at": _from_us(before_us) if page_token else _LATEST,
            "before_id": before_id or "\U0010ffff",
            "limit": limit + 1,
        }
        async with self._pool.connection() as conn:
            cur = await conn.execute(LIST_RUNS, params)
            rows = await cur.fetchall()
        runs = [run_from_row(r, same) for r in rows[:limit]]
        token = encode_run_page_token(_to_us(rows[limit - 1][8]), rows[limit - 1][0]) if len(rows) > limit else ""
        return runs, token

    async def get_steps(self, run_id: str, *, after: int = -1, limit: int = 1000) -> list[Step]:
        """See `Store.get_steps`."""
        async with self._pool.connection() as conn, conn.cursor(row_factory=class_row(Step)) as cur:
            await cur.execute(SELECT_STEPS, {"run_id": run_id, "after": after, "limit": limit})
            steps = await cur.fetchall()
            if not steps:
                return steps
            span = {"run_id": run_id, "first": steps[0].step_index, "last": steps[-1].step_index}
            rows = await (await conn.execute(SELECT_STEP_ACTIVITIES, span)).fetchall()
        return with_activities(steps, rows, same)
