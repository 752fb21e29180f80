"""Upgrading a database from before namespaces: what it held is there, whole, in default/default."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from cmo_server.domain import DEFAULT_NAMESPACE, Namespace, RunStatus, WaitRequest
from cmo_server.store import Store
from cmo_server.store._migrations import load_migrations
from cmo_server.store.postgres import PostgresStore
from cmo_server.store.sqlite import SqliteStore
from tests.integration.contract.helpers import LONG_LEASE, chain_graph, claim, commit_for
from tests.support.postgres import create_database, drop_database

BEFORE = {"cmo_server.store.sqlite": 8, "cmo_server.store.postgres": 9}
"""The first migration of each backend that knows namespaces."""
GRAPH = chain_graph("a", "b", queue="upgrade-q", graph_id="upgrade-g")

# The rows of one run as the schema before namespaces held them: step 0 done, step 1 leased to
# nobody with a record of an earlier attempt, a signal kept, an artifact put.
OLD_ROWS = [
    "INSERT INTO graphs (graph_id, version, definition, registered_at) VALUES ('upgrade-g', 1, {definition}, {now})",
    """INSERT INTO runs (run_id, graph_id, graph_version, status, input, seed, step_count, created_at, updated_at)
       VALUES ('old-run', 'upgrade-g', 1, 2, {input}, 7, 1, {now}, {now})""",
    """INSERT INTO tasks (run_id, step_index, node_id, task_queue, graph_key, attempt, failures, visible_at,
                          logical_time)
       VALUES ('old-run', 1, 'b', 'upgrade-q', 'upgrade-g@1', 1, 1, {now}, {now})""",
    """INSERT INTO steps (run_id, step_index, node_id, attempt, state, state_hash, output, next_key, next_node,
                          logical_time, started_at, finished_at)
       VALUES ('old-run', 0, 'a', 1, {state}, 'h0', {empty}, 'next', 'b', {now}, {now}, {now})""",
    """INSERT INTO activities (run_id, step_index, seq, kind, name, request_hash, result, attempt, recorded_at)
       VALUES ('old-run', 1, 0, 'call', 'charge', 'rh', {result}, 1, {now})""",
    "INSERT INTO signals (run_id, name, payload, sent_at) VALUES ('old-run', 'go', {payload}, {now})",
    "INSERT INTO artifacts (run_id, digest, size, media_type, created_at) VALUES ('old-run', 'ab12', 3, 'x/y', {now})",
]


def _old_sqlite(path: Path) -> None:
    now = time.time_ns() // 1000
    values = {
        "definition": f"'{GRAPH.definition_json().decode()}'",
        "now": str(now),
        "input": "x'7b7d'",  # {}
        "state": "x'7b226e223a317d'",  # {"n":1}
        "empty": "x''",
        "result": "x'31'",
        "payload": "x'2279657322'",  # "yes"
    }
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER)"
        )
        for migration in load_migrations("cmo_server.store.sqlite"):
            if migration.version >= BEFORE["cmo_server.store.sqlite"]:
                break
            conn.executescript(migration.sql)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (migration.version, migration.name, now))
        for row in OLD_ROWS:
            conn.execute(row.format(**values))


def _old_postgres(url: str) -> None:
    values = {
        "definition": f"'{GRAPH.definition_json().decode()}'",
        "now": "now()",
        "input": "'\\x7b7d'::bytea",
        "state": "'\\x7b226e223a317d'::bytea",
        "empty": "''::bytea",
        "result": "'\\x31'::bytea",
        "payload": "'\\x2279657322'::bytea",
    }
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz)"
        )
        for migration in load_migrations("cmo_server.store.postgres"):
            if migration.version >= BEFORE["cmo_server.store.postgres"]:
                break
            conn.execute(migration.sql)
            conn.execute("INSERT INTO schema_migrations VALUES (%s, %s, now())", (migration.version, migration.name))
        for row in OLD_ROWS:
            conn.execute(row.format(**values))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def upgraded(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A store opened on a database written before namespaces (opening it migrates it)."""
    if request.param == "sqlite":
        path = tmp_path / "old.db"
        _old_sqlite(path)
        async with SqliteStore.open(path) as store:
            yield store
        return
    server = request.getfixturevalue("postgres_server")
    url = await asyncio.to_thread(create_database, server)
    try:
        await asyncio.to_thread(_old_postgres, url)
        async with PostgresStore.open(url, pool_size=2) as store:
            yield store
    finally:
        await asyncio.to_thread(drop_database, server, url)


async def test_an_old_database_is_upgraded_into_the_default_namespace(upgraded: Store) -> None:
    store = upgraded
    run = await store.get_run(DEFAULT_NAMESPACE, "old-run")
    assert run is not None
    assert (run.namespace, run.status, run.step_count, run.current_node) == (
        DEFAULT_NAMESPACE,
        RunStatus.RUNNING,
        1,
        "b",
    )
    assert await store.get_run(Namespace("acme", "web"), "old-run") is None
    assert await store.get_graph(DEFAULT_NAMESPACE, "upgrade-g", 1) == GRAPH
    (step,) = await store.get_steps(DEFAULT_NAMESPACE, "old-run")
    assert (step.node_id, step.state) == ("a", b'{"n":1}')
    artifact = await store.find_artifact(DEFAULT_NAMESPACE, "ab12")
    assert artifact is not None
    assert (artifact.run_id, artifact.size) == ("old-run", 3)

    # The task goes on where it was: claimable by its graph's key, with its record and its state.
    task = await claim(store, GRAPH, lease=LONG_LEASE)
    assert task is not None
    assert (task.run_id, task.step_index, task.attempt, task.failures, task.state) == ("old-run", 1, 2, 1, b'{"n":1}')
    assert [(a.seq, a.name, a.result) for a in task.activities] == [(0, "charge", b"1")]
    # The signal kept before the upgrade is taken by the wait for it.
    wait = WaitRequest(seq=1, kind="signal", name="go", duration=None, request_hash="w")
    assert (await store.suspend_task(task.key, wait)).resumed
    again = await claim(store, GRAPH, lease=LONG_LEASE)
    assert again is not None
    assert [(a.seq, a.result) for a in again.activities] == [(0, b"1"), (1, b'"yes"')]
    await store.complete_step(commit_for(again, GRAPH))
    done = await store.get_run(DEFAULT_NAMESPACE, "old-run")
    assert done is not None
    assert done.status is RunStatus.COMPLETED
