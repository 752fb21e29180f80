"""Fixtures of the end-to-end tests: process ownership, marker files, a database per backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.graphs import Markers
from tests.support.postgres import create_database, drop_database
from tests.support.processes import Database, Processes


def _postgres_store_missing() -> str | None:
    try:
        from cmo_server.store.postgres import PostgresStore  # noqa: F401
    except ImportError as err:
        return f"cmo_server.store.postgres.PostgresStore is not available yet ({err})"
    return None


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Starts servers and workers; kills and reaps them all afterwards, pass or fail."""
    procs = Processes(tmp_path / "processes")
    try:
        yield procs
    finally:
        procs.cleanup()
        # Shown with a failing test's report (pytest hides a passing test's output).
        print(procs.logs())


@pytest.fixture
def markers(tmp_path: Path) -> Markers:
    """The marker files the counter graph's node writes and the test reads."""
    return Markers(tmp_path / "markers")


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh database on each backend: an SQLite file, or a new Postgres database."""
    yield from _fresh_database(request, tmp_path)


@pytest.fixture(scope="module", params=BACKENDS)
def module_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """As `database`, for a module whose tests share one server per backend."""
    yield from _fresh_database(request, tmp_path_factory.mktemp("database"))


def _fresh_database(request: pytest.FixtureRequest, directory: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        yield Database(sqlite_path=directory / "cmo.db")
        return
    if reason := _postgres_store_missing():
        pytest.skip(reason)
    server_url: str = request.getfixturevalue("postgres_server")
    url = create_database(server_url)
    try:
        yield Database(database_url=url)
    finally:
        drop_database(server_url, url)
