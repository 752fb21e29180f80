"""Tasks, their fencing identity, checkpoints and how an attempt ends."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cmo import RunStatus
from cmo_server.domain._namespaces import Namespace
from cmo_server.domain._records import ActivityRecord, Failure
from cmo_server.errors import shown

__all__ = [
    "AttemptEnd",
    "Checkpoint",
    "CompleteOutcome",
    "FailDecider",
    "FailDecision",
    "Task",
    "TaskKey",
    "TaskRef",
    "TaskState",
]


@dataclass(frozen=True, slots=True)
class TaskKey:
    """Names one attempt of one step and the worker holding its lease: the fence of every worker write.

    A write matches only while `attempt` is the task's current one and `worker_id` holds its lease.
    """

    namespace: Namespace
    run_id: str
    step_index: int
    attempt: int
    worker_id: str


@dataclass(frozen=True, slots=True)
class TaskRef:
    """What a task token names: one attempt of one step, with the node and graph version it runs."""

    namespace: Namespace
    run_id: str
    step_index: int
    attempt: int
    node_id: str
    graph_id: str
    graph_version: int

    def key(self, worker_id: str) -> TaskKey:
        """The fence of a write about this attempt by `worker_id`."""
        return TaskKey(self.namespace, self.run_id, self.step_index, self.attempt, worker_id)


@dataclass(frozen=True, slots=True)
class Task:
    """A task leased to a worker."""

    namespace: Namespace
    run_id: str
    step_index: int
    attempt: int
    node_id: str
    graph_id: str
    graph_version: int
    task_queue: str
    state: bytes
    logical_time: datetime
    seed: int
    lease_expires_at: datetime
    failures: int
    activities: tuple[ActivityRecord, ...] = ()
    """The step's activities recorded by earlier attempts, by seq."""
    cancel_requested: bool = False
    """CancelRun was called for the run."""
    trace_context: dict[str, str] = field(default_factory=dict)
    """The run's W3C Trace Context (see NewRun)."""
    previous_lease_expired: bool = False
    """Set by a claim that took the task from an attempt whose lease had lapsed (its worker died or stalled)."""
    worker_id: str = ""
    """The worker the task is leased to."""

    @property
    def key(self) -> TaskKey:
        """This attempt's fencing identity."""
        return TaskKey(self.namespace, self.run_id, self.step_index, self.attempt, self.worker_id)

    @property
    def ref(self) -> TaskRef:
        """What this attempt's task token names."""
        return TaskRef(
            self.namespace, self.run_id, self.step_index, self.attempt, self.node_id, self.graph_id, self.graph_version
        )


@dataclass(frozen=True, slots=True)
class TaskState:
    """The current task row of a run, leased or not (for decisions off the hot path)."""

    namespace: Namespace
    run_id: str
    step_index: int
    attempt: int
    node_id: str
    graph_id: str
    graph_version: int
    task_queue: str
    failures: int
    lease_owner: str | None
    cancel_requested: bool = False
    """CancelRun was called for the run."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A step a worker completed: reported by the API, completed by the engine, applied by the store at once."""

    key: TaskKey
    graph_id: str
    graph_version: int
    node_id: str
    state: bytes
    """The state after the step; canonical JSON once the engine has checked it."""
    output: bytes
    next_key: str
    started_at: datetime
    activities: tuple[ActivityRecord, ...] = ()
    """Activity records riding on the checkpoint, stored in its transaction (first writer wins)."""
    eager_task_queues: frozenset[str] = frozenset()
    """Queues the worker takes the next task from in the reply (eager dispatch)."""
    state_hash: str = ""
    """Set by the engine, like the fields below."""
    next_node: str = ""
    """The node `next_key` leads to; END_NODE finishes the run."""
    next_queue: str = ""
    eager: bool = False
    """Lease the next task to the completing worker in the same transaction (eager dispatch)."""
    lease: timedelta = timedelta(0)

    def resolved(
        self,
        *,
        state: bytes,
        state_hash: str,
        output: bytes,
        next_node: str,
        next_queue: str,
        eager: bool,
        lease: timedelta,
        activities: tuple[ActivityRecord, ...],
    ) -> Checkpoint:
        """This checkpoint as the engine completes it: checked payloads, the next node and its queue.

        Built directly rather than with `dataclasses.replace`, which costs 4 µs more on every step.
        """
        return Checkpoint(
            self.key,
            self.graph_id,
            self.graph_version,
            self.node_id,
            state,
            output,
            self.next_key,
            self.started_at,
            activities,
            self.eager_task_queues,
            state_hash,
            next_node,
            next_queue,
            eager,
            lease,
        )

    def same_as(self, *, node_id: str, state_hash: str, output: bytes, next_key: str) -> bool:
        """Whether a stored checkpoint of this step is this one (a re-send), not another."""
        return (node_id, state_hash, bytes(output), next_key) == (
            self.node_id,
            self.state_hash,
            self.output,
            self.next_key,
        )

    def differs_message(self) -> str:
        """Why a re-sent checkpoint that differs from the stored one is refused."""
        return (
            f"step {self.key.step_index} of run {shown(self.key.run_id)} was completed by attempt "
            f"{self.key.attempt} with another checkpoint (state, output or next key); a re-send must be identical"
        )

    @property
    def eager_worker(self) -> str | None:
        """The worker the next task is leased to at once, if any."""
        return self.key.worker_id if self.eager else None

    def leased_next_task(self, *, logical_time: datetime, seed: int, lease_expires_at: datetime) -> Task:
        """The next step's task as leased to the eager worker (attempt 1, from this step's state)."""
        return Task(
            namespace=self.key.namespace,
            run_id=self.key.run_id,
            step_index=self.key.step_index + 1,
            attempt=1,
            node_id=self.next_node,
            graph_id=self.graph_id,
            graph_version=self.graph_version,
            task_queue=self.next_queue,
            state=self.state,
            logical_time=logical_time,
            seed=seed,
            lease_expires_at=lease_expires_at,
            failures=0,
            worker_id=self.key.worker_id,
        )


class AttemptEnd(enum.Enum):
    """How an attempt that did not complete ends (FailTask)."""

    RETRY = "retry"
    """Counted as a failure; the step is ready again after a delay."""
    RELEASE = "release"
    """Given back unrun: ready at once, nothing counted."""
    FAIL = "fail"
    """The run ends FAILED."""
    CANCEL = "cancel"
    """The run ends CANCELLED."""


@dataclass(frozen=True, slots=True)
class FailDecision:
    """What becomes of an attempt that did not complete, decided from its task as stored."""

    end: AttemptEnd
    failure: Failure
    """Recorded as the task's last failure (RETRY) or the run's failure (FAIL, CANCEL)."""
    delay: timedelta = timedelta(0)
    """RETRY: when the step is ready again."""


FailDecider = Callable[["TaskState"], FailDecision]
"""Decides a FailTask from the task as the store holds it, inside the store's transaction."""


@dataclass(frozen=True, slots=True)
class CompleteOutcome:
    """What a CompleteTask did."""

    run_status: RunStatus
    next_task: Task | None = None
    """The next task, already leased to the eager worker."""
    enqueued: tuple[str, str] | None = None
    """(task_queue, graph key) of a next task left for pollers, to wake them."""
    duplicate: bool = False
    """The step had been completed by this attempt before: nothing was written."""
    finished_at: datetime | None = None
    """When the run completed, if this step finished it."""
