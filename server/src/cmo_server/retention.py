"""Retention: ended runs older than a cut-off are deleted, then the blobs nothing references.

Safe to run on every replica at once: each batch of runs is taken with SKIP LOCKED, and a blob is
deleted only if it is unreferenced and was last written before the grace period (a put of content
already stored refreshes it, so a payload that starts to reference an old blob again keeps it).
The order matters: blobs are listed first, references read second, so a blob written after the
listing is never a candidate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cmo_server.blob import BlobStore
from cmo_server.domain import Namespace, RunStatus
from cmo_server.store import Store

__all__ = ["PruneReport", "Retention"]

logger = logging.getLogger(__name__)

BATCH = 500
"""Runs deleted per transaction: short transactions, however many runs are due."""
COUNT_ALL = 2**62
"""The limit of a dry run's count: it deletes nothing, so one statement counts them all."""


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What a prune did (or, dry, would do)."""

    runs: int
    blobs: int
    dry_run: bool = False


class Retention:
    """Prunes ended runs and collects unreferenced blobs."""

    def __init__(self, store: Store, blobs: BlobStore, *, blob_grace: timedelta) -> None:
        self._store = store
        self._blobs = blobs
        self._blob_grace = blob_grace

    async def prune(
        self,
        *,
        older_than: timedelta,
        statuses: Sequence[RunStatus],
        namespace: Namespace | None = None,
        dry_run: bool = False,
    ) -> PruneReport:
        """Delete runs that ended more than `older_than` ago with one of `statuses`, then blobs.

        Only the runs of `namespace` when given (PruneRuns), of every namespace otherwise (the
        schedule). Blobs are shared by content across namespaces: only those nothing references go.
        """
        ended_before = datetime.now(UTC) - older_than
        runs = 0
        while True:
            done = await self._store.prune_runs(
                ended_before=ended_before,
                statuses=statuses,
                limit=COUNT_ALL if dry_run else BATCH,
                namespace=namespace,
                dry_run=dry_run,
            )
            runs += done
            if dry_run or done < BATCH:
                break
        blobs = await self.collect_blobs(dry_run=dry_run)
        return PruneReport(runs=runs, blobs=blobs, dry_run=dry_run)

    async def collect_blobs(self, *, dry_run: bool = False) -> int:
        """Delete the blobs no payload or artifact references, written before the grace period."""
        stale_before = datetime.now(UTC) - self._blob_grace
        candidates = await self._blobs.stale_blobs(stale_before)
        if not candidates:
            return 0
        referenced = await self._store.referenced_blobs()
        unreferenced = [d for d in candidates if d not in referenced]
        if dry_run:
            return len(unreferenced)
        deleted = 0
        for digest in unreferenced:
            if await self._blobs.delete_if_stale(digest, stale_before):
                deleted += 1
        return deleted

    async def run_schedule(self, *, every: timedelta, older_than: timedelta, statuses: Sequence[RunStatus]) -> None:
        """Prune every `every` until cancelled; failures are logged and retried next time."""
        while True:
            await asyncio.sleep(every.total_seconds())
            try:
                report = await self.prune(older_than=older_than, statuses=statuses)
            except Exception:
                logger.exception("scheduled pruning failed; trying again in %s", every)
                continue
            if report.runs or report.blobs:
                logger.info(
                    "pruned %d runs ended more than %s ago and %d unreferenced blobs",
                    report.runs,
                    older_than,
                    report.blobs,
                )
