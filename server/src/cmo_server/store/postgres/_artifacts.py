"""Artifact records on Postgres: which run put which content (the content is in the blob store)."""

from __future__ import annotations

from cmo_server.domain import Artifact, Namespace
from cmo_server.errors import NotFound
from cmo_server.store._rows import artifact_from_row
from cmo_server.store.postgres._db import Pool, same

__all__ = ["PostgresArtifacts"]

# Inserted only for a run that exists, in the same statement; a repeated put of the same content
# by the same run keeps the first record.
INSERT_ARTIFACT = """
    INSERT INTO artifacts (namespace, run_id, digest, size, media_type, created_at)
    SELECT namespace, run_id, %(digest)s, %(size)s, %(media_type)s, now() FROM runs
     WHERE namespace = %(namespace)s AND run_id = %(run_id)s
    ON CONFLICT (namespace, run_id, digest) DO NOTHING
"""
SELECT_RUN_ARTIFACT = """
    SELECT namespace, run_id, digest, size, media_type, created_at FROM artifacts
     WHERE namespace = %(namespace)s AND run_id = %(run_id)s AND digest = %(digest)s
"""
SELECT_OLDEST_ARTIFACT = """
    SELECT namespace, run_id, digest, size, media_type, created_at FROM artifacts
     WHERE namespace = %(namespace)s AND digest = %(digest)s ORDER BY created_at LIMIT 1
"""


class PostgresArtifacts:
    """The artifact-record part of `PostgresStore`."""

    _pool: Pool

    async def add_artifact(self, artifact: Artifact) -> Artifact:
        """See `Store.add_artifact`."""
        params = {
            "namespace": str(artifact.namespace),
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
        return artifact_from_row(row, same)

    async def find_artifact(self, namespace: Namespace, sha256: str) -> Artifact | None:
        """See `Store.find_artifact`."""
        params = {"namespace": str(namespace), "digest": sha256}
        async with self._pool.connection() as conn:
            row = await (await conn.execute(SELECT_OLDEST_ARTIFACT, params)).fetchone()
        return None if row is None else artifact_from_row(row, same)
