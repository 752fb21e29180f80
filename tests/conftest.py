"""Shared fixtures: real backends only (SQLite files, Postgres servers)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import postgres_url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of a real Postgres server's maintenance database: $CMO_TEST_POSTGRES_URL or a throwaway one."""
    with postgres_url() as url:
        yield url
