"""Artifacts: content a run put, stored once by its SHA-256."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cmo_server.domain._namespaces import Namespace

__all__ = ["Artifact"]


@dataclass(frozen=True, slots=True)
class Artifact:
    """Content a run put as an artifact: stored once in the blob store, named by its SHA-256."""

    namespace: Namespace
    run_id: str
    sha256: str
    """Lowercase hex SHA-256 of the content."""
    size: int
    media_type: str
    created_at: datetime | None = None
    """Set by the store: when this run first put this content."""
