"""Migrations: applied at open, recorded once, safe when several servers start at once."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3

import pytest

from cmo_server.store.postgres import PostgresStore
from cmo_server.store.postgres._migrate import migrate
from tests.integration.contract.conftest import Database
from tests.integration.contract.helpers import NS, chain_graph, claim, start_run, unique
from tests.support.postgres import create_database, drop_database


async def test_reopening_a_database_applies_nothing_and_keeps_its_data(database: Database) -> None:
    graph = chain_graph("a", "b", queue=unique("q"))
    async with database.open() as store:
        run_id = await start_run(store, graph)
    applied = await database.applied_migrations()

    async with database.open() as store:
        run = await store.get_run(NS, run_id)
        assert run is not None
        task = await claim(store, graph)
        assert task is not None
        assert task.run_id == run_id

    assert applied[0] == 1
    assert await database.applied_migrations() == applied


@pytest.mark.postgres
async def test_replicas_starting_together_migrate_once(postgres_server: str) -> None:
    url = await asyncio.to_thread(create_database, postgres_server)  # empty: nothing applied yet
    try:
        results = await asyncio.gather(*(migrate(url) for _ in range(4)))
        applied = sorted(v for versions in results for v in versions)
        assert applied[0] == 1
        assert applied == sorted(set(applied))  # each migration applied by one replica only
        assert await Database("postgres", url).applied_migrations() == applied

        stores = [await PostgresStore.connect(url, pool_size=1) for _ in range(2)]
        try:
            graph = chain_graph("a", queue=unique("q"))
            run_id = await start_run(stores[0], graph)
            assert await stores[1].get_run(NS, run_id) is not None
        finally:
            for store in stores:
                await store.aclose()
    finally:
        await asyncio.to_thread(drop_database, postgres_server, url)


async def test_servers_opening_one_new_sqlite_file_together_all_succeed(tmp_path) -> None:
    from cmo_server.store.sqlite import SqliteStore

    for attempt in range(10):
        path = tmp_path / f"new-{attempt}.db"

        async def open_and_close(path=path) -> None:
            async with SqliteStore.open(path):
                pass

        # Separate threads with separate event loops, as separate server processes would be.
        await asyncio.gather(*(asyncio.to_thread(asyncio.run, open_and_close()) for _ in range(4)))
        with contextlib.closing(sqlite3.connect(path)) as conn:
            versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations")]
        assert versions == sorted(set(versions)) == list(range(1, len(versions) + 1))  # each applied once
