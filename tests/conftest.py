"""Shared fixtures: real backends only (SQLite files, Postgres servers, an S3 server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.nats import nats_url
from tests.support.postgres import postgres_url
from tests.support.redis import redis_url
from tests.support.s3 import S3Server, s3_server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of a real Postgres server's maintenance database: $CMO_TEST_POSTGRES_URL or a throwaway one."""
    with postgres_url() as url:
        yield url


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """A real S3 endpoint and credentials: $CMO_TEST_S3_ENDPOINT or a throwaway SeaweedFS."""
    with s3_server() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """URL of a real Redis server: $CMO_TEST_REDIS_URL or a throwaway one."""
    with redis_url() as url:
        yield url


@pytest.fixture(scope="session")
def nats_server() -> Iterator[str]:
    """URL of a real NATS server with JetStream: $CMO_TEST_NATS_URL or a throwaway one."""
    with nats_url() as url:
        yield url
