"""Artifact records on Postgres: which run put which content (the content is in the blob store)."""

from __future__ import annotations

from typing import Any

from cmo_server.domain import Artifact
from cmo_server.errors import NotFound
from cmo_server.store.postgres._tasks import Pool

__all__ = ["PostgresArtifacts"]

# Inserted only for a run that exists, in the same statement; a repeated put of the same content
# by the same run keeps the first record.
INSERT_ARTIFACT = """
    INSERT INTO artifacts (run_id, digest, size, media_type, created_at)
    SELECT run_id, %(digest)s, %(size)s, %(media_type)s, now() FROM runs WHERE run_id = %(run_id)s
    ON CONFLICT (run_id, digest) DO NOTHING
"""
SELECT_RUN_ARTIFACT = """
    SELECT run_id, digest, size, media_type, created_at FROM artifacts
     WHERE run_id = %(run_id)s AND digest = %(digest)s
"""
SELECT_OLDEST_ARTIFACT = """
    SELECT run_id, digest, size, media_type, created_at FROM artifacts
     WHERE digest = %(digest)s ORDER BY created_at LIMIT 1
"""


def _artifact(row: Any) -> Artifact:
    return Artifact(run_id=row[0], sha256=row[1], size=row[2], media_type=row[3], created_at=row[4])


class PostgresArtifacts:
    """The artifact-record part of `PostgresStore`."""

    _pool: Pool

    async def add_artifact(self, artifact: Artifact) -> Artifact:
        """See `Store.add_artifact`."""
        params = {
            "run_id": artifact.run_id,
            "digest": artifact.sha256,
            "size": artifact.size,
            "media_type": artifact.media_type,
        }
        async with self._pool.connection() as conn:
            await conn.execute(INSERT_ARTIFACT, params)
            row = await (await conn.execute(SELECT_RUN_ARTIFACT, params)).fetchone()
        if row is None:
            raise NotFound(f"run {artifact.run_id!r} does not exist")
        return _artifact(row)

    async def find_artifact(self, sha256: str) -> Artifact | None:
        """See `Store.find_artifact`."""
        async with self._pool.connection() as conn:
            row = await (await conn.execute(SELECT_OLDEST_ARTIFACT, {"digest": sha256})).fetchone()
        return None if row is None else _artifact(row)
