"""The run's current task as it stands, for explaining it (not for deciding anything)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cmo_server.domain import Failure, Namespace

__all__ = ["ProgressStore", "TaskSnapshot"]


@dataclass(frozen=True, slots=True)
class TaskSnapshot:
    """One run's task row, read with the store's clock."""

    run_id: str
    step_index: int
    node_id: str
    task_queue: str
    graph_key: str
    attempt: int
    failures: int
    visible_at: datetime | None
    """When it may be taken (a lease's end, a retry's time); None: not until its wait is over."""
    lease_owner: str | None
    last_failure: Failure | None
    wait_kind: str | None
    wait_name: str | None
    wait_until: datetime | None
    now: datetime
    """The store's time when it was read (what `visible_at` is compared with)."""


class ProgressStore(Protocol):
    async def current_tasks(self, namespace: Namespace, run_ids: Sequence[str]) -> dict[str, TaskSnapshot]:
        """The task rows of those of the runs that have one (unfinished runs), by run id."""
        ...
