"""What the client reports about runs and steps: plain values, no protobuf."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["FailureInfo", "PruneReport", "RecordedActivity", "RunInfo", "RunStatus", "StepInfo", "WaitInfo"]


class RunStatus(enum.IntEnum):
    """Where a run is in its life; the values are the wire's."""

    PENDING = 1
    RUNNING = 2
    WAITING = 3
    COMPLETED = 4
    FAILED = 5
    CANCELLED = 6
    TERMINATED = 7

    @property
    def terminal(self) -> bool:
        """The run will not change any more."""
        return self >= RunStatus.COMPLETED


@dataclass(frozen=True, slots=True)
class FailureInfo:
    """Why an attempt or a run failed."""

    message: str
    type: str
    node_id: str
    step_index: int
    attempt: int
    details: str = ""


@dataclass(frozen=True, slots=True)
class WaitInfo:
    """What a WAITING run waits for."""

    kind: str
    """"signal" or "timer"."""
    name: str
    """The signal's name; empty for a timer."""
    until: datetime | None
    """When the timer fires or the signal wait times out; None: no timeout."""
    step_index: int
    seq: int


@dataclass(frozen=True, slots=True)
class RunProgress:
    """Why an unfinished run is where it is (`RunInfo.progress`).

    `reason` is one of "no_poller", "ready", "leased", "retry_at", "signal", "timer",
    "specialist", "cancel_requested"; `summary` says it in one line.
    """

    reason: str
    summary: str
    task_queue: str = ""
    step_index: int = 0
    attempt: int = 0
    worker_id: str = ""
    """The worker holding the step's lease (leased)."""
    until: datetime | None = None
    """When the lease ends, the retry is due, the timer fires or the signal wait times out."""
    last_poll: datetime | None = None
    """The last poll of the step's queue for its graph version that this server saw."""
    last_failure: FailureInfo | None = None
    signal_name: str = ""
    pollers: int = 0
    """Workers polling the step's queue for its graph version lately."""
    agent_id: str = ""
    """The specialist whose reply the step waits for."""


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A run as the server describes it."""

    run_id: str
    graph_id: str
    graph_version: int
    status: RunStatus
    step_count: int
    """Steps checkpointed so far."""
    current_node: str
    """The node the run is at; empty once finished."""
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    input: Any
    """The initial state (JSON-shaped)."""
    result: Any
    """The final state (JSON-shaped) once completed, else None."""
    failure: FailureInfo | None
    seed: int = 0
    """Seeds the steps' ctx.random() (with the step index)."""
    parent_run_id: str = ""
    """Set on a fork: the run it was forked from."""
    forked_from_step: int = 0
    """Set on a fork: the last step it shares with its parent."""
    waiting: WaitInfo | None = None
    """Set while the run is WAITING."""
    cancel_requested: bool = False
    """CancelRun was called (the run ends CANCELLED once its node winds up)."""
    progress: RunProgress | None = None
    """While unfinished: what it waits for (no worker polls its queue, a lease, a retry, ...)."""
    tenant: str = "default"
    """The run's namespace: its tenant and project."""
    project: str = "default"


@dataclass(frozen=True, slots=True)
class RecordedActivity:
    """An activity as recorded in a step."""

    seq: int
    kind: str
    name: str
    request_hash: str
    result: Any
    """The result (JSON-shaped); None when it failed."""
    error: FailureInfo | None
    attempt: int


@dataclass(frozen=True, slots=True)
class StepInfo:
    """One checkpointed step."""

    step_index: int
    node_id: str
    attempt: int
    state: Any
    """The state after the step (JSON-shaped)."""
    state_hash: str
    """SHA-256 of the state's canonical JSON."""
    output: Any
    next_key: str
    next_node: str
    logical_time: datetime
    started_at: datetime
    finished_at: datetime
    activities: tuple[RecordedActivity, ...] = ()
    """The activities recorded in the step, by seq."""

    @property
    def duration_ms(self) -> float:
        """Wall time of the attempt that completed the step."""
        return (self.finished_at - self.started_at).total_seconds() * 1000


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What a prune of old runs deleted (or, with dry_run, would delete)."""

    runs: int
    blobs: int
    """Blobs no payload or artifact referenced any more."""
    dry_run: bool = False
