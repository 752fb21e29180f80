"""Artifact records on SQLite: which run put which content (the content is in the blob store)."""

from __future__ import annotations

import sqlite3

from cmo_server.domain import Artifact, Namespace
from cmo_server.errors import NotFound
from cmo_server.store._rows import artifact_from_row
from cmo_server.store.sqlite._db import Transaction, dt, now_us, run_key

__all__ = ["add_artifact", "find_artifact"]

INSERT_ARTIFACT = """
    INSERT INTO artifacts (namespace, run_id, digest, size, media_type, created_at)
    SELECT namespace, run_id, :digest, :size, :media_type, :now FROM runs
     WHERE namespace = :namespace AND run_id = :run_id
    ON CONFLICT (namespace, run_id, digest) DO NOTHING
"""
SELECT_RUN_ARTIFACT = """
    SELECT namespace, run_id, digest, size, media_type, created_at FROM artifacts
     WHERE namespace = :namespace AND run_id = :run_id AND digest = :digest
"""
SELECT_OLDEST_ARTIFACT = """
    SELECT namespace, run_id, digest, size, media_type, created_at FROM artifacts
     WHERE namespace = :namespace AND digest = :digest ORDER BY created_at LIMIT 1
"""


def add_artifact(conn: sqlite3.Connection, artifact: Artifact) -> Artifact:
    """See `Store.add_artifact`."""
    params = {
        **run_key(artifact.namespace, artifact.run_id),
        "digest": artifact.sha256,
        "size": artifact.size,
        "media_type": artifact.media_type,
        "now": now_us(),
    }
    with Transaction(conn):
        conn.execute(INSERT_ARTIFACT, params)
        row = conn.execute(SELECT_RUN_ARTIFACT, params).fetchone()
    if row is None:
        raise NotFound(f"run {artifact.run_id!r} does not exist")
    return artifact_from_row(row, dt)


def find_artifact(conn: sqlite3.Connection, namespace: Namespace, sha256: str) -> Artifact | None:
    """See `Store.find_artifact`."""
    params = {"namespace": str(namespace), "digest": sha256}
    row = conn.execute(SELECT_OLDEST_ARTIFACT, params).fetchone()
    return None if row is None else artifact_from_row(row, dt)
