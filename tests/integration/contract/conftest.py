"""The `store` fixture: every contract test runs on SQLite and on Postgres, in a fresh database."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from cmo_server.store import Store
from cmo_server.store.postgres import PostgresStore
from cmo_server.store.postgres._migrate import migrate
from cmo_server.store.sqlite import SqliteStore
from tests.support.postgres import create_database, drop_database


@dataclass(frozen=True, slots=True)
class Database:
    """A fresh, migrated database of one backend: an SQLite file or a Postgres URL."""

    backend: str
    location: str

    @asynccontextmanager
    async def open(self) -> AsyncIterator[Store]:
        """A store on this database (another one each call)."""
        if self.backend == "sqlite":
            async with SqliteStore.open(self.location) as lite:
                yield lite
        else:
            async with PostgresStore.open(self.location, pool_size=4) as pg:
                yield pg

    async def applied_migrations(self) -> list[int]:
        """The versions recorded in schema_migrations, in order, once each."""
        query = "SELECT version FROM schema_migrations ORDER BY version"
        if self.backend == "sqlite":
            with sqlite3.connect(self.location) as conn:
                rows = conn.execute(query).fetchall()
        else:
            async with await psycopg.AsyncConnection.connect(self.location) as pg:
                rows = await (await pg.execute(query)).fetchall()
        return [row[0] for row in rows]


@pytest.fixture(scope="session")
def postgres_template(postgres_server: str) -> Iterator[str]:
    """Name of a migrated database that each Postgres test's database is cloned from."""
    url = create_database(postgres_server)
    try:
        # Its own thread and event loop: the fixture is first requested from inside a test's loop.
        with ThreadPoolExecutor(max_workers=1) as thread:
            thread.submit(lambda: asyncio.run(migrate(url))).result()
        yield url.rpartition("/")[2]
    finally:
        drop_database(postgres_server, url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A database of each backend: a file in tmp_path, or a clone of the migrated template."""
    if request.param == "sqlite":
        yield Database("sqlite", str(tmp_path / "cmo.db"))
        return
    server: str = request.getfixturevalue("postgres_server")
    template: str = request.getfixturevalue("postgres_template")
    url = await asyncio.to_thread(create_database, server, template=template)
    try:
        yield Database("postgres", url)
    finally:
        await asyncio.to_thread(drop_database, server, url)


@pytest.fixture
async def store(database: Database) -> AsyncIterator[Store]:
    """A migrated, empty store of each backend."""
    async with database.open() as opened:
        yield opened
