"""Retention over each backend: what a prune counts, and what it deletes, per namespace."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from cmo_server.blob import FilesystemBlobStore
from cmo_server.config import TERMINAL_STATUSES
from cmo_server.domain import Failure, Namespace
from cmo_server.retention import BATCH, Retention
from cmo_server.store import Store
from tests.integration.contract.helpers import NS, chain_graph, start_run, unique

ENDED = Failure("done", type="Terminated")


async def ended_runs(store: Store, count: int) -> None:
    graph = chain_graph("a", queue=unique("q"))
    for _ in range(count):
        await store.terminate_run(NS, await start_run(store, graph), failure=ENDED)


async def test_a_dry_run_counts_every_run_a_prune_would_delete_past_one_batch(store: Store, tmp_path: Path) -> None:
    await ended_runs(store, BATCH + 3)
    retention = Retention(store, FilesystemBlobStore(tmp_path / "blobs"), blob_grace=timedelta(hours=1))
    ago = timedelta(microseconds=1)

    dry = await retention.prune(older_than=ago, statuses=TERMINAL_STATUSES, dry_run=True)
    assert (dry.runs, dry.dry_run) == (BATCH + 3, True)  # not capped at one batch
    elsewhere = await retention.prune(older_than=ago, statuses=TERMINAL_STATUSES, namespace=Namespace("x", "y"))
    assert elsewhere.runs == 0
    done = await retention.prune(older_than=ago, statuses=TERMINAL_STATUSES, namespace=NS)
    assert done.runs == BATCH + 3
    assert (await store.list_runs(NS))[0] == []
