"""The embedded SQLite backend: one connection, WAL, one transaction per transition.

SQLite allows one writer at a time, so one connection serves every call. The transactions run
right on the event loop's thread: they take 0.1-0.2 ms, while a hop to a worker thread and back
measured 0.14 ms a call, and inline calls raised W2 from ~190 to ~240 runs/s (bench/README.md).
The price is that a call blocks the loop while it runs, up to the busy timeout if another process
holds the write lock: right for the embedded dev server, and Postgres is the production backend.

This module opens and migrates the file; each store call runs one function, given the connection,
of the module of its concern (`_graphs`, `_runs`, `_tasks`, `_activities`, `_waits`, `_artifacts`,
`_stats`, `_prune`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from cmo_server.domain import (
    ActivityRecord,
    Artifact,
    CancelOutcome,
    Checkpoint,
    CompleteOutcome,
    FailDecider,
    FailDecision,
    Failure,
    GraphSpec,
    Namespace,
    NewFork,
    NewRun,
    NewSignal,
    Run,
    RunStatus,
    SignalOutcome,
    Step,
    Task,
    TaskKey,
    TaskState,
    WaitOutcome,
    WaitRequest,
)
from cmo_server.store._migrations import load_migrations
from cmo_server.store._pages import decode_graph_page_token, decode_id_page_token, decode_run_page_token
from cmo_server.store._protocol import GraphPage, ReadyListener, RunPage
from cmo_server.store.sqlite import _activities as activity_log
from cmo_server.store.sqlite import _artifacts as artifacts
from cmo_server.store.sqlite import _graphs as graphs
from cmo_server.store.sqlite import _prune as prune
from cmo_server.store.sqlite import _requests as requests
from cmo_server.store.sqlite import _runs as runs
from cmo_server.store.sqlite import _stats as stats
from cmo_server.store.sqlite import _tasks as tasks
from cmo_server.store.sqlite import _waits as waits
from cmo_server.store.sqlite._agents import SqliteAgents
from cmo_server.store.sqlite._db import Transaction, now_us
from cmo_server.store.sqlite._progress import SqliteProgress

__all__ = ["SqliteStore"]

T = TypeVar("T")


class SqliteStore(SqliteAgents, SqliteProgress):
    """`Store` on an SQLite file (and `AgentStore`, `ProgressStore`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._closed = False

    @classmethod
    @asynccontextmanager
    async def open(cls, path: str | Path) -> AsyncIterator[SqliteStore]:
        """Open (creating and migrating if needed) the database at `path`."""
        store = await cls.connect(path)
        try:
            yield store
        finally:
            await store.aclose()

    @classmethod
    async def connect(cls, path: str | Path) -> SqliteStore:
        """Open the database at `path`, migrated; the caller must `aclose()` it."""
        # Opening may wait on another process's migration: do it off the event loop.
        conn = await asyncio.to_thread(_connect_and_migrate, str(path))
        return cls(conn)

    async def aclose(self) -> None:
        """Close the connection; idempotent."""
        if not self._closed:
            self._closed = True
            self._conn.close()

    async def ping(self) -> None:
        """See `Store.ping`."""
        self._conn.execute("SELECT 1").fetchone()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(self._conn, *args)

    # -- graphs -----------------------------------------------------------------------------------

    async def register_graph(self, graph: GraphSpec) -> bool:
        """See `Store.register_graph`."""
        return await self._call(graphs.register_graph, graph)

    async def get_graph(self, namespace: Namespace, graph_id: str, version: int) -> GraphSpec | None:
        """See `Store.get_graph`."""
        return await self._call(graphs.get_graph, namespace, graph_id, version)

    async def list_graphs(
        self, namespace: Namespace, *, graph_id: str = "", limit: int = 100, page_token: str = ""
    ) -> GraphPage:
        """See `Store.list_graphs`."""
        after = decode_graph_page_token(page_token) if page_token else ("", 0)
        return await self._call(graphs.list_graphs, namespace, graph_id, limit, after)

    # -- runs -------------------------------------------------------------------------------------

    async def create_run(self, run: NewRun) -> tuple[Run, bool]:
        """See `Store.create_run`."""
        return await self._call(runs.create_run, run)

    async def fork_run(self, fork: NewFork) -> tuple[Run, bool]:
        """See `Store.fork_run`."""
        return await self._call(runs.fork_run, fork)

    async def terminate_run(self, namespace: Namespace, run_id: str, *, failure: Failure) -> Run | None:
        """See `Store.terminate_run`."""
        return await self._call(runs.terminate_run, namespace, run_id, failure)

    async def get_run(self, namespace: Namespace, run_id: str) -> Run | None:
        """See `Store.get_run`."""
        return await self._call(runs.get_run, namespace, run_id)

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
            after = decode_id_page_token(page_token) if page_token else ""
            return await self._call(runs.search_runs, namespace, id_prefix, graph_id, int(status or 0), limit, after)
        before = decode_run_page_token(page_token) if page_token else (2**62, "")
        return await self._call(runs.list_runs, namespace, graph_id, int(status or 0), limit, before)

    async def get_steps(self, namespace: Namespace, run_id: str, *, after: int = -1, limit: int = 1000) -> list[Step]:
        """See `Store.get_steps`."""
        return await self._call(runs.get_steps, namespace, run_id, after, limit)

    # -- tasks ------------------------------------------------------------------------------------

    async def claim_task(
        self, *, task_queues: Sequence[str], graph_keys: Sequence[str], worker_id: str, lease: timedelta
    ) -> Task | None:
        """See `Store.claim_task`."""
        return await self._call(tasks.claim_task, list(task_queues), list(graph_keys), worker_id, lease)

    async def ready_queues(self, task_queues: Sequence[str]) -> set[tuple[str, str]]:
        """See `Store.ready_queues`."""
        return await self._call(tasks.ready_queues, list(task_queues))

    async def next_ready_at(self, task_queues: Sequence[str]) -> datetime | None:
        """See `Store.next_ready_at`."""
        return await self._call(tasks.next_ready_at, list(task_queues))

    async def extend_lease(self, key: TaskKey, *, lease: timedelta) -> tuple[datetime, bool]:
        """See `Store.extend_lease`."""
        return await self._call(tasks.extend_lease, key, lease)

    async def complete_step(self, commit: Checkpoint) -> CompleteOutcome:
        """See `Store.complete_step`."""
        return await self._call(tasks.complete_step, commit)

    async def record_activity(self, key: TaskKey, activity: ActivityRecord) -> ActivityRecord:
        """See `Store.record_activity`."""
        return await self._call(activity_log.record_activity, key, activity)

    async def run_of_request(self, namespace: Namespace, message_id: str) -> str | None:
        """See `Store.run_of_request`."""
        return await self._call(requests.run_of_request, namespace, message_id)

    async def requests_awaiting(self, namespace: Namespace, agent_id: str) -> list[tuple[str, str]]:
        """See `Store.requests_awaiting`."""
        return await self._call(requests.requests_awaiting, namespace, agent_id)

    async def get_task(self, namespace: Namespace, run_id: str) -> TaskState | None:
        """See `Store.get_task`."""
        return await self._call(tasks.get_task, namespace, run_id)

    async def release_task(self, key: TaskKey) -> None:
        """See `Store.release_task`."""
        await self._call(tasks.release_task, key)

    async def fail_task(
        self, key: TaskKey, *, decide: FailDecider, activities: tuple[ActivityRecord, ...] = ()
    ) -> tuple[TaskState, FailDecision]:
        """See `Store.fail_task`."""
        return await self._call(tasks.fail_task, key, decide, activities)

    # -- waits ------------------------------------------------------------------------------------

    async def suspend_task(
        self, key: TaskKey, wait: WaitRequest, *, activities: tuple[ActivityRecord, ...] = ()
    ) -> WaitOutcome:
        """See `Store.suspend_task`."""
        return await self._call(waits.suspend_task, key, wait, activities)

    async def signal_run(self, signal: NewSignal) -> SignalOutcome | None:
        """See `Store.signal_run`."""
        return await self._call(waits.signal_run, signal, runs.get_run)

    async def cancel_run(self, namespace: Namespace, run_id: str, *, failure: Failure) -> CancelOutcome | None:
        """See `Store.cancel_run`."""
        return await self._call(waits.cancel_run, namespace, run_id, failure, runs.get_run)

    async def fire_due_waits(self) -> set[tuple[str, str]]:
        """See `Store.fire_due_waits`."""
        return await self._call(waits.fire_due_waits)

    async def next_wait_at(self) -> datetime | None:
        """See `Store.next_wait_at`."""
        return await self._call(waits.next_wait_at)

    # -- retention --------------------------------------------------------------------------------

    async def prune_runs(
        self,
        *,
        ended_before: datetime,
        statuses: Sequence[RunStatus],
        limit: int,
        namespace: Namespace | None = None,
        dry_run: bool = False,
    ) -> int:
        """See `Store.prune_runs`."""
        return await self._call(prune.prune_runs, ended_before, statuses, limit, namespace, dry_run)

    async def referenced_blobs(self) -> set[str]:
        """See `Store.referenced_blobs`."""
        return await self._call(prune.referenced_blobs)

    # -- other servers ----------------------------------------------------------------------------

    async def watch(self, listener: ReadyListener) -> None:
        """See `Store.watch`: SQLite has one server per file, so there is nothing to hear."""

    # -- artifacts --------------------------------------------------------------------------------

    async def add_artifact(self, artifact: Artifact) -> Artifact:
        """See `Store.add_artifact`."""
        return await self._call(artifacts.add_artifact, artifact)

    async def find_artifact(self, namespace: Namespace, sha256: str) -> Artifact | None:
        """See `Store.find_artifact`."""
        return await self._call(artifacts.find_artifact, namespace, sha256)

    # -- metrics ----------------------------------------------------------------------------------

    async def queue_depths(self) -> dict[tuple[Namespace, str], int]:
        """See `Store.queue_depths`."""
        return await self._call(stats.queue_depths)

    async def count_runs_by_status(self) -> dict[tuple[Namespace, RunStatus], int]:
        """See `Store.count_runs_by_status`."""
        return await self._call(stats.count_runs_by_status)

    async def count_runs_by_graph(self, namespace: Namespace) -> dict[tuple[str, int, RunStatus], int]:
        """See `Store.count_runs_by_graph`."""
        return await self._call(stats.count_runs_by_graph, namespace)


def _connect_and_migrate(path: str) -> sqlite3.Connection:
    conn = _connect(path)
    try:
        _migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _connect(path: str) -> sqlite3.Connection:
    # Autocommit mode: each method opens its own BEGIN IMMEDIATE transaction.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA busy_timeout = 10000")  # first: switching to WAL takes a lock too
    _switch_to_wal(conn)
    # In WAL mode NORMAL never corrupts and loses nothing when the process dies (kill -9); only
    # an OS crash or power loss can drop the last commits. FULL costs an fsync per step.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    # Switching a new file to WAL can fail with "database is locked" without calling the busy
    # handler while another process creates the same file: wait it out here.
    for _ in range(100):
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err):
                raise
            time.sleep(0.05)
    conn.execute("PRAGMA journal_mode = WAL")


def _migrate(conn: sqlite3.Connection) -> None:
    # Each migration is checked and applied under one write lock, so processes opening the same
    # new file at once apply it exactly once.
    for migration in load_migrations("cmo_server.store.sqlite"):
        with Transaction(conn):
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
            )
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)).fetchone():
                continue
            for statement in _statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)", (migration.version, migration.name, now_us())
            )


def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit the open transaction)."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"unterminated statement in migration: {pending.strip()[:80]!r}")
    return statements
