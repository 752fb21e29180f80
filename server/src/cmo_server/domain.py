"""The server's value objects: what the engine and the stores pass between them."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cmo import RunStatus
from cmo.serialization import canonical_json
from cmo_server.errors import shown

__all__ = [
    "DEFAULT_NAMESPACE",
    "END_NODE",
    "ActivityRecord",
    "AttemptEnd",
    "CANCELLED_ERROR",
    "SIGNAL_TIMEOUT_ERROR",
    "WAIT_KINDS",
    "WAIT_SIGNAL",
    "WAIT_TIMER",
    "Artifact",
    "CancelOutcome",
    "Checkpoint",
    "CompleteOutcome",
    "FailDecision",
    "FailDecider",
    "Failure",
    "GraphSpec",
    "NewFork",
    "NewRun",
    "Namespace",
    "NewSignal",
    "NodeSpec",
    "RetrySpec",
    "Run",
    "RunStatus",
    "SignalOutcome",
    "Step",
    "Task",
    "TaskKey",
    "TaskRef",
    "TaskState",
    "Wait",
    "WaitRequest",
    "WaitOutcome",
    "cancelled_failure",
    "graph_key",
    "split_graph_key",
    "timeout_failure",
]

END_NODE = "__end__"
"""The node id (and edge key) that finishes a run."""

MAX_RETRY_DELAY = timedelta(days=365)
"""Longest back-off before a retry: an unbounded policy would outgrow what a timestamp holds."""


NAMESPACE_PART = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
"""A tenant or a project: what an A2A topic token may be, so a namespace names its topics as it is."""


@dataclass(frozen=True, slots=True, order=True)
class Namespace:
    """Where a resource lives: every run, graph version, task queue, signal and artifact has one."""

    tenant: str = "default"
    project: str = "default"

    def __str__(self) -> str:
        """The stores' form of it, tenant/project (neither part may hold a slash)."""
        return f"{self.tenant}/{self.project}"

    @classmethod
    def parse(cls, text: str) -> Namespace:
        """The namespace `str()` gave."""
        tenant, _, project = text.partition("/")
        return cls(tenant, project)


DEFAULT_NAMESPACE = Namespace()


def graph_key(namespace: Namespace, graph_id: str, version: int) -> str:
    """One string naming a graph version in its namespace, as task claims filter on it.

    Claims and wake-ups match on (task queue, graph key), so a poller never sees another
    namespace's tasks, though queue names repeat across namespaces.
    """
    return f"{namespace}/{graph_id}@{version}"


def split_graph_key(key: str) -> tuple[Namespace, str, int]:
    """(namespace, graph_id, version) of a `graph_key`."""
    tenant, project, rest = key.split("/", 2)
    graph_id, _, version = rest.rpartition("@")
    return Namespace(tenant, project), graph_id, int(version)


@dataclass(frozen=True, slots=True)
class RetrySpec:
    """A node's retry policy as the server applies it."""

    max_attempts: int = 3
    initial_interval: timedelta = timedelta(seconds=1)
    backoff: float = 2.0
    max_interval: timedelta | None = None
    non_retryable_errors: tuple[str, ...] = ()

    def delay_after(self, failures: int) -> timedelta:
        """The wait before the attempt that follows `failures` failed ones."""
        cap = MAX_RETRY_DELAY if self.max_interval is None else min(self.max_interval, MAX_RETRY_DELAY)
        try:
            return min(self.initial_interval * (self.backoff ** max(failures - 1, 0)), cap)
        except OverflowError:
            return cap

    def allows_another(self, failures: int, error_type: str, *, non_retryable: bool) -> bool:
        """Whether a step that has failed `failures` times may be tried again."""
        if non_retryable or error_type in self.non_retryable_errors:
            return False
        return self.max_attempts == 0 or failures < self.max_attempts


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node of a registered graph."""

    node_id: str
    task_queue: str = "default"
    retry: RetrySpec = field(default_factory=RetrySpec)


@dataclass(frozen=True, slots=True)
class GraphSpec:
    """A registered, immutable graph version."""

    graph_id: str
    version: int
    entry_node: str
    nodes: dict[str, NodeSpec]
    edges: dict[tuple[str, str], str]
    """(from_node, key) -> to_node."""
    namespace: Namespace = DEFAULT_NAMESPACE

    @property
    def key(self) -> str:
        """The graph version's claim-filter key."""
        return graph_key(self.namespace, self.graph_id, self.version)

    def next_node(self, from_node: str, key: str) -> str | None:
        """The node an edge key leads to (END_NODE finishes), or None when no edge matches."""
        if key == END_NODE:
            return END_NODE
        return self.edges.get((from_node, key))

    def definition_json(self) -> bytes:
        """Canonical JSON of the definition: equal graphs give equal bytes."""
        return canonical_json(self.to_json())

    def to_json(self) -> dict[str, Any]:
        """The definition as a JSON-shaped dict (stored in the graph registry)."""
        return {
            "graph_id": self.graph_id,
            "version": self.version,
            "entry_node": self.entry_node,
            "nodes": [
                {
                    "node_id": n.node_id,
                    "task_queue": n.task_queue,
                    "retry": {
                        "max_attempts": n.retry.max_attempts,
                        "initial_interval_s": n.retry.initial_interval.total_seconds(),
                        "backoff": n.retry.backoff,
                        "max_interval_s": (
                            None if n.retry.max_interval is None else n.retry.max_interval.total_seconds()
                        ),
                        "non_retryable_errors": list(n.retry.non_retryable_errors),
                    },
                }
                for n in sorted(self.nodes.values(), key=lambda n: n.node_id)
            ],
            "edges": [[f, k, t] for (f, k), t in sorted(self.edges.items())],
        }

    def conflict_message(self, stored: dict[str, Any]) -> str:
        """Why this definition cannot be registered over the `stored` one (its `to_json`) of the same version."""
        where = _first_difference(stored, self.to_json(), "graph")
        return (
            f"graph {shown(self.graph_id)} version {self.version} is registered with another definition "
            f"(first difference: {where}); a version is immutable, register a new version"
        )

    @classmethod
    def from_json(cls, data: dict[str, Any], namespace: Namespace = DEFAULT_NAMESPACE) -> GraphSpec:
        """Rebuild a definition stored by `to_json` in `namespace`."""
        nodes = {}
        for n in data["nodes"]:
            r = n["retry"]
            retry = RetrySpec(
                max_attempts=r["max_attempts"],
                initial_interval=timedelta(seconds=r["initial_interval_s"]),
                backoff=r["backoff"],
                max_interval=None if r["max_interval_s"] is None else timedelta(seconds=r["max_interval_s"]),
                non_retryable_errors=tuple(r["non_retryable_errors"]),
            )
            nodes[n["node_id"]] = NodeSpec(n["node_id"], n["task_queue"], retry)
        return cls(
            graph_id=data["graph_id"],
            version=data["version"],
            entry_node=data["entry_node"],
            nodes=nodes,
            edges={(f, k): t for f, k, t in data["edges"]},
            namespace=namespace,
        )


def _first_difference(stored: Any, given: Any, path: str) -> str:
    """The path of the first place two JSON-shaped values differ, with both values there."""
    if isinstance(stored, dict) and isinstance(given, dict):
        for name in sorted(stored.keys() | given.keys()):
            if stored.get(name) != given.get(name):
                return _first_difference(stored.get(name), given.get(name), f"{path}.{name}")
    elif isinstance(stored, list) and isinstance(given, list):
        # Nodes are listed sorted by id: name them by id, not by position.
        for i in range(max(len(stored), len(given))):
            a = stored[i] if i < len(stored) else None
            b = given[i] if i < len(given) else None
            if a != b:
                label = a.get("node_id") if isinstance(a, dict) else None
                label = label or (b.get("node_id") if isinstance(b, dict) else None)
                return _first_difference(a, b, f"{path}[{shown(label) if label else i}]")
    return f"{path} is {shown(stored)} in the registered version, {shown(given)} in this one"


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an attempt or a run failed."""

    message: str
    type: str = ""
    non_retryable: bool = False
    details: str = ""
    node_id: str = ""
    step_index: int = 0
    attempt: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON-shaped form, as stored."""
        return {
            "message": self.message,
            "type": self.type,
            "non_retryable": self.non_retryable,
            "details": self.details,
            "node_id": self.node_id,
            "step_index": self.step_index,
            "attempt": self.attempt,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Failure:
        """Rebuild a stored failure."""
        return cls(**data)


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


@dataclass(frozen=True, slots=True)
class ActivityRecord:
    """A recorded side effect of a step, (run_id, step_index, seq) naming it."""

    seq: int
    kind: str
    name: str
    request_hash: str
    result: bytes | None
    """Canonical JSON of the result; None when the activity failed."""
    error: Failure | None
    attempt: int
    """The attempt that recorded it."""
    recorded_at: datetime | None = None
    """Set by the store."""
    duration: timedelta | None = field(default=None, compare=False)
    """How long it ran on its worker, as the worker reported it; for metrics, never stored."""


WAIT_SIGNAL = "signal"
WAIT_TIMER = "timer"
WAIT_KINDS = (WAIT_SIGNAL, WAIT_TIMER)
TIMER_FIRED = b"null"
"""A fired timer's recorded result."""


@dataclass(frozen=True, slots=True)
class Wait:
    """What a suspended step waits for."""

    kind: str
    """WAIT_SIGNAL or WAIT_TIMER."""
    name: str
    """The signal's name; empty for a timer."""
    until: datetime | None
    """When the timer fires or the wait for the signal times out; None: never."""
    step_index: int
    seq: int


@dataclass(frozen=True, slots=True)
class WaitRequest:
    """A wait as the node code asked for it (SuspendTask)."""

    seq: int
    kind: str
    name: str
    duration: timedelta | None
    """A timer's length, or the signal's timeout; None: no timeout (signals only)."""
    request_hash: str

    def outcome_before_start(self, *, attempt: int, cancel_reason: str | None) -> ActivityRecord | None:
        """The outcome of a wait that is over before it starts, else None.

        It is over when the run is cancelled (a reason is given) or a timer has no length; a
        pending signal is for the store to look up.
        """
        if cancel_reason is not None:
            return self.record(result=None, error=cancelled_failure(cancel_reason), attempt=attempt)
        if self.kind == WAIT_TIMER and self.duration is not None and self.duration <= timedelta(0):
            return self.record(result=TIMER_FIRED, error=None, attempt=attempt)
        return None

    def ended(self, *, attempt: int, failure: Failure | None = None) -> ActivityRecord:
        """The outcome of a wait ended by `failure` (a cancellation), else by its time.

        A timer fires (a null result); a signal wait times out (a SignalTimeoutError).
        """
        if failure is None and self.kind == WAIT_TIMER:
            return self.record(result=TIMER_FIRED, error=None, attempt=attempt)
        return self.record(result=None, error=failure or timeout_failure(self.name), attempt=attempt)

    def record(self, *, result: bytes | None, error: Failure | None, attempt: int) -> ActivityRecord:
        """The activity record of this wait's outcome."""
        return ActivityRecord(
            seq=self.seq,
            kind=self.kind,
            name=self.name,
            request_hash=self.request_hash,
            result=result,
            error=error,
            attempt=attempt,
        )


@dataclass(frozen=True, slots=True)
class WaitOutcome:
    """What a SuspendTask did."""

    resumed: bool
    """The wait was over at once (a signal sent before, a cancelled run): the step is ready."""
    ready: tuple[str, str]
    """(task_queue, graph key) of the step's task, to wake pollers when it is ready."""
    wake_at: datetime | None = None
    """When the wait times out, if it does and it did not resume."""


@dataclass(frozen=True, slots=True)
class SignalOutcome:
    """What a SignalRun did."""

    run: Run
    delivered: bool
    """The signal woke the step waiting for it."""
    ready: tuple[str, str] | None = None
    """(task_queue, graph key) of the task it made ready."""


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    """What a CancelRun did."""

    run: Run
    ready: tuple[str, str] | None = None
    """(task_queue, graph key) of a waiting task it woke with the cancellation."""


CANCELLED_ERROR = "RunCancelledError"
"""Failure type of a wait or activity cut short by CancelRun (`cmo.errors.RunCancelledError`)."""
SIGNAL_TIMEOUT_ERROR = "SignalTimeoutError"
"""Failure type of a signal wait that timed out (`cmo.errors.SignalTimeoutError`)."""


def cancelled_failure(reason: str) -> Failure:
    """The failure a cancelled run and its cut-short wait carry."""
    return Failure(message=reason or "cancelled", type=CANCELLED_ERROR, non_retryable=True)


def timeout_failure(name: str) -> Failure:
    """The recorded outcome of a signal wait that timed out."""
    return Failure(message=f"no signal {name!r} arrived in time", type=SIGNAL_TIMEOUT_ERROR, non_retryable=True)


@dataclass(frozen=True, slots=True)
class NewSignal:
    """A signal to deliver to a run."""

    namespace: Namespace
    run_id: str
    name: str
    payload: bytes
    """Canonical JSON."""
    request_id: str
    """The sender's id for the signal; a repeat of one already delivered is ignored. May be empty."""


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
