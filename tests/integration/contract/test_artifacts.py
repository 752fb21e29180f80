"""Artifact records: which run put which content, idempotent per (run, content)."""

from __future__ import annotations

import hashlib

import pytest

from cmo_server.domain import Artifact
from cmo_server.errors import NotFound
from cmo_server.store import Store
from tests.integration.contract.helpers import NS, chain_graph, start_run, unique


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_a_put_is_recorded_once_per_run_and_found_by_digest(store: Store) -> None:
    graph = chain_graph("a", queue=unique("q"))
    first_run, second_run = await start_run(store, graph), await start_run(store, graph)
    content = digest(b"report")

    stored = await store.add_artifact(Artifact(NS, first_run, content, 6, "application/pdf"))
    assert (stored.run_id, stored.sha256, stored.size, stored.media_type) == (first_run, content, 6, "application/pdf")
    assert stored.created_at is not None
    again = await store.add_artifact(Artifact(NS, first_run, content, 6, "text/plain"))
    assert again == stored  # the first record stays
    other = await store.add_artifact(Artifact(NS, second_run, content, 6, "text/plain"))
    assert (other.run_id, other.media_type) == (second_run, "text/plain")

    assert await store.find_artifact(NS, content) == stored  # the oldest record
    assert await store.find_artifact(NS, digest(b"never put")) is None


async def test_an_artifact_of_a_missing_run_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="no-such-run"):
        await store.add_artifact(Artifact(NS, "no-such-run", digest(b"x"), 1, "text/plain"))
    assert await store.find_artifact(NS, digest(b"x")) is None
