"""Schema migrations on Postgres, safe when several server replicas start at once."""

from __future__ import annotations

import logging

import psycopg

from cmo_server.store._migrations import load_migrations

__all__ = ["migrate"]

logger = logging.getLogger(__name__)

MIGRATIONS_PACKAGE = "cmo_server.store.postgres"

MIGRATION_LOCK_KEY = int.from_bytes(b"CMO_MIGR", "big")
"""The advisory lock every replica takes while it looks at or changes the schema."""

# Transaction-scoped, so a replica that dies mid-migration cannot leave the lock held.
LOCK_MIGRATIONS = "SELECT pg_advisory_xact_lock(%(key)s)"
# Created under the lock: concurrent CREATE TABLE IF NOT EXISTS can still collide in pg_type.
CREATE_SCHEMA_MIGRATIONS = """
    CREATE TABLE IF NOT EXISTS schema_migrations (
        version    integer     PRIMARY KEY,
        name       text        NOT NULL,
        applied_at timestamptz NOT NULL
    )
"""
SELECT_APPLIED_VERSIONS = "SELECT version FROM schema_migrations"
RECORD_MIGRATION = "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%(version)s, %(name)s, now())"


async def migrate(url: str, *, connect_timeout: float = 10.0) -> list[int]:
    """Apply the pending migrations, each in its own transaction; returns the versions applied now.

    Every transaction takes the migration lock and re-reads `schema_migrations`, so replicas
    starting together apply each migration once and wait for each other instead of failing.
    """
    applied_now: list[int] = []
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, connect_timeout=max(1, round(connect_timeout))
    ) as conn:
        for migration in load_migrations(MIGRATIONS_PACKAGE):
            async with conn.transaction():
                await conn.execute(LOCK_MIGRATIONS, {"key": MIGRATION_LOCK_KEY})
                await conn.execute(CREATE_SCHEMA_MIGRATIONS)
                cur = await conn.execute(SELECT_APPLIED_VERSIONS)
                if migration.version in {row[0] for row in await cur.fetchall()}:
                    continue
                # No parameters: the simple query protocol runs the file's statements in one go.
                await conn.execute(migration.sql)
                await conn.execute(RECORD_MIGRATION, {"version": migration.version, "name": migration.name})
            logger.info("applied Postgres migration %04d_%s", migration.version, migration.name)
            applied_now.append(migration.version)
    return applied_now
