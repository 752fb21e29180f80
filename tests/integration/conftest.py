"""In-process servers on real backends for SDK-level integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import cmo
from cmo_server.app import CmoServer
from cmo_server.config import BlobConfig, EngineLimits, ServerConfig, StoreConfig
from tests.support.postgres import create_database, drop_database

FAST_LIMITS = EngineLimits(task_lease=timedelta(seconds=1), sweep_interval=timedelta(milliseconds=100))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerConfig]:
    """A config for a fresh database on each backend, with short leases; blobs in tmp_path/blobs."""
    if request.param == "sqlite":
        yield ServerConfig(
            listen="127.0.0.1:0", store=StoreConfig(sqlite_path=str(tmp_path / "cmo.db")), limits=FAST_LIMITS
        )
        return
    server_url = request.getfixturevalue("postgres_server")
    database = create_database(server_url)
    try:
        yield ServerConfig(
            listen="127.0.0.1:0",
            store=StoreConfig(database_url=database, pool_size=4),
            blob=BlobConfig(dir=str(tmp_path / "blobs")),
            limits=FAST_LIMITS,
        )
    finally:
        drop_database(server_url, database)


@pytest.fixture
async def server(server_config: ServerConfig) -> AsyncIterator[CmoServer]:
    async with CmoServer.running(server_config) as running:
        yield running


@pytest.fixture
async def client(server: CmoServer) -> AsyncIterator[cmo.Client]:
    async with await cmo.Client.connect(f"127.0.0.1:{server.port}") as c:
        yield c
