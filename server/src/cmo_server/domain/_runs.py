"""Runs and their checkpointed steps, as stored and as created."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cmo import RunStatus
from cmo_server.domain._namespaces import Namespace
from cmo_server.domain._records import ActivityRecord, Failure
from cmo_server.domain._tasks import Task

if TYPE_CHECKING:
    from cmo_server.domain._waits import Wait

__all__ = ["NewFork", "NewRun", "Run", "Step"]


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run to create, with the task of its entry node."""

    namespace: Namespace
    run_id: str
    graph_id: str
    graph_version: int
    input: bytes
    seed: int
    entry_node: str
    entry_queue: str
    lease_to: str | None = None
    """Lease the entry task to this worker at once (a parked poller): attempt 1, run RUNNING."""
    lease: timedelta = timedelta(0)
    """Length of that lease."""
    trace_context: dict[str, str] = field(default_factory=dict)
    """W3C Trace Context of the StartRun call; every task of the run carries it."""

    def entry_task(self, run: Run) -> Task:
        """The entry task as leased to `lease_to`, from the run as created."""
        return Task(
            namespace=self.namespace,
            run_id=run.run_id,
            step_index=0,
            attempt=1,
            node_id=self.entry_node,
            graph_id=run.graph_id,
            graph_version=run.graph_version,
            task_queue=self.entry_queue,
            state=run.input,
            logical_time=run.created_at,
            seed=run.seed,
            lease_expires_at=run.created_at + self.lease,
            failures=0,
            trace_context=self.trace_context,
            worker_id=self.lease_to or "",
        )


@dataclass(frozen=True, slots=True)
class NewFork:
    """A fork to create: steps 0..from_step copied from the source, then the next node's task."""

    namespace: Namespace
    """The source's, and so the fork's."""
    source_run_id: str
    from_step: int
    run_id: str
    state: bytes | None
    """Replaces the state of step from_step in the fork (canonical JSON); None keeps it."""
    state_hash: str | None
    next_node: str
    next_queue: str
    trace_context: dict[str, str] = field(default_factory=dict)
    """W3C Trace Context of the ForkRun call; every task of the fork carries it."""


@dataclass(frozen=True, slots=True)
class Run:
    """A run as stored."""

    namespace: Namespace
    run_id: str
    graph_id: str
    graph_version: int
    status: RunStatus
    input: bytes
    seed: int
    step_count: int
    current_node: str
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    result: bytes | None = None
    failure: Failure | None = None
    parent_run_id: str = ""
    """Set on a fork: the run it was forked from."""
    forked_from_step: int = 0
    """Set on a fork: the last step it shares with its parent."""
    waiting: Wait | None = None
    """Set while the run is WAITING: what its current step waits for."""
    cancel_requested: bool = False
    """CancelRun was called."""


@dataclass(frozen=True, slots=True)
class Step:
    """A step checkpoint as stored."""

    run_id: str
    step_index: int
    node_id: str
    attempt: int
    state: bytes
    state_hash: str
    output: bytes
    next_key: str
    next_node: str
    logical_time: datetime
    started_at: datetime
    finished_at: datetime
    activities: tuple[ActivityRecord, ...] = ()
    """The activities recorded in this step, by seq."""
