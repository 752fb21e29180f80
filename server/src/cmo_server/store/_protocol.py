"""The storage contract every backend meets, proved by tests/integration/contract.

One protocol per concern, so that a store method is added to one of them and a wrapper can take
only those it needs; `Store` is all of them, and what the engine takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from cmo_server.domain import (
    ActivityRecord,
    Artifact,
    CancelOutcome,
    Checkpoint,
    CompleteOutcome,
    FailDecider,
    FailDecision,
    Failure,
    GraphSpec,
    Namespace,
    NewFork,
    NewRun,
    NewSignal,
    Run,
    RunStatus,
    SignalOutcome,
    Step,
    Task,
    TaskKey,
    TaskState,
    WaitOutcome,
    WaitRequest,
)

__all__ = [
    "ActivityStore",
    "ArtifactStore",
    "GraphPage",
    "GraphStore",
    "MetricsStore",
    "ReadyListener",
    "RequestStore",
    "RetentionStore",
    "RunPage",
    "RunStore",
    "Store",
    "TaskStore",
    "WaitStore",
]

RunPage = tuple[list[Run], str]
"""Runs and the token of the next page ("" when there is none)."""
GraphPage = tuple[list[GraphSpec], str]
"""Graph versions and the token of the next page ("" when there is none)."""


class ReadyListener(Protocol):
    """Receives what other servers on the same database did, from a store that can push it."""

    def task_ready(self, task_queue: str, graph_key: str, at: datetime) -> None:
        """Another server made a task of this queue and graph version claimable from `at` on."""

    def wait_scheduled(self, at: datetime) -> None:
        """Another server suspended a step on a wait that times out at `at`."""

    def run_ended(self, namespace: Namespace, run_id: str) -> None:
        """Another server ended this run (completed, failed, cancelled or terminated)."""

    def push_started(self) -> None:
        """Notifications flow (again); any sent while they did not were missed: look now."""

    def push_stopped(self) -> None:
        """Notifications stopped (the connection broke): look for work by sweeping until they resume."""


class GraphStore(Protocol):
    """The graph registry: versioned graph definitions, immutable once stored."""

    async def register_graph(self, graph: GraphSpec) -> bool:
        """Store a graph version in its namespace; True if new, False if identical to the stored one.

        Raises:
            AlreadyExists: the version is registered with another definition.
        """

    async def get_graph(self, namespace: Namespace, graph_id: str, version: int) -> GraphSpec | None:
        """A graph version; version 0 means the newest."""

    async def list_graphs(
        self, namespace: Namespace, *, graph_id: str = "", limit: int = 100, page_token: str = ""
    ) -> GraphPage:
        """Graph versions by graph_id then version, optionally of one graph only."""


class RunStore(Protocol):
    """Runs and their checkpoints: start, fork, terminate, read."""

    async def create_run(self, run: NewRun) -> tuple[Run, bool]:
        """Create a run and its entry task, or return the run that has this run_id.

        With `run.lease_to` the entry task is created leased to that worker (attempt 1) and the
        run RUNNING; `run.entry_task(created_run)` is then the task as leased.

        Returns:
            The run and whether it was created now.
        """

    async def fork_run(self, fork: NewFork) -> tuple[Run, bool]:
        """Create a fork of a run, or return the run that has fork.run_id already.

        The fork gets the source's steps 0..from_step and their activities (step from_step with
        the edited state, if given) and the task of the node after from_step. The source is not
        changed.
        """

    async def terminate_run(self, namespace: Namespace, run_id: str, *, failure: Failure) -> Run | None:
        """End an unfinished run as TERMINATED with this failure, withdrawing its task.

        A run that has ended already is returned unchanged; None when there is no such run.
        """

    async def get_run(self, namespace: Namespace, run_id: str) -> Run | None:
        """One run."""

    async def list_runs(
        self,
        namespace: Namespace,
        *,
        graph_id: str = "",
        status: RunStatus | None = None,
        limit: int = 100,
        page_token: str = "",
        id_prefix: str = "",
    ) -> RunPage:
        """Runs, newest first, optionally filtered.

        With `id_prefix`: only the runs whose id starts with it, in id order (by the bytes of their
        UTF-8), read through an index on the id so that a search costs the same in any number of runs.
        """

    async def get_steps(self, namespace: Namespace, run_id: str, *, after: int = -1, limit: int = 1000) -> list[Step]:
        """Checkpoints of a run with step_index > after, in order."""


class TaskStore(Protocol):
    """The task queues: claims, leases, and the end of an attempt by completion, release or failure."""

    async def claim_task(
        self, *, task_queues: Sequence[str], graph_keys: Sequence[str], worker_id: str, lease: timedelta
    ) -> Task | None:
        """Lease the oldest ready task of these queues and graph versions, attempt + 1.

        Graph keys name their namespace, so only tasks of those namespaces are found.

        A task is ready when it is visible and unleased or its lease has expired. It carries the
        step's activities recorded by earlier attempts, and `previous_lease_expired` when it was
        still leased (every other end of an attempt gives the lease up).
        """

    async def ready_queues(self, task_queues: Sequence[str]) -> set[tuple[str, str]]:
        """(task_queue, graph key) pairs that have a ready task, among these queues."""

    async def next_ready_at(self, task_queues: Sequence[str]) -> datetime | None:
        """When the next task of these queues becomes ready, if none is ready now."""

    async def extend_lease(self, key: TaskKey, *, lease: timedelta) -> tuple[datetime, bool]:
        """Push the lease of the current attempt forward.

        Returns:
            The new expiry, and whether CancelRun was called for the run.
        """

    async def complete_step(self, commit: Checkpoint) -> CompleteOutcome:
        """Checkpoint a step and move the run on (next task or completion), atomically.

        Re-sending a step this attempt completed before is a no-op (`duplicate=True`) when the
        checkpoint is the same (node, state hash, output, next key).

        Raises:
            StaleLease: `commit.key` is not the task's current, leased attempt.
            FailedPrecondition: the attempt completed the step before with another checkpoint.
        """

    async def get_task(self, namespace: Namespace, run_id: str) -> TaskState | None:
        """The run's current task, if the run is not finished."""

    async def release_task(self, key: TaskKey) -> None:
        """Give the task back unrun: ready at once, no failure counted."""

    async def fail_task(
        self, key: TaskKey, *, decide: FailDecider, activities: tuple[ActivityRecord, ...] = ()
    ) -> tuple[TaskState, FailDecision]:
        """End an attempt that did not complete, in one transaction with its riding records.

        `decide` is called with the task as stored (its failures so far, whether the run is being
        cancelled) while the store holds it; its decision is applied in the same transaction: a
        retry after a delay, a release, or the end of the run (FAILED or CANCELLED). An exception
        from `decide` writes nothing.

        Returns:
            The task as it was before, and the decision applied.

        Raises:
            StaleLease: `key` is not the task's current, leased attempt.
        """


class ActivityStore(Protocol):
    """The activity log: a step's recorded side effects, fenced by its attempt."""

    async def record_activity(self, key: TaskKey, activity: ActivityRecord) -> ActivityRecord:
        """Record an activity of the current attempt; the first record of a (step, seq) wins.

        Returns:
            The stored record: this one, or the one recorded before for the same seq.

        Raises:
            StaleLease: `key` is not the task's current, leased attempt.
        """


class WaitStore(Protocol):
    """Steps suspended on a signal or a timer, signals, cancellation."""

    async def suspend_task(
        self, key: TaskKey, wait: WaitRequest, *, activities: tuple[ActivityRecord, ...] = ()
    ) -> WaitOutcome:
        """End the current attempt while its node waits, storing `activities` first.

        If the wait is over already (its seq is recorded, the run is cancelled, or a signal of
        that name is pending, which it then consumes) its outcome is recorded at `wait.seq` and the
        task is ready at once. Otherwise the task waits unleased, with the run WAITING, until
        `signal_run`, `cancel_run` or `fire_due_waits` ends the wait.

        Raises:
            StaleLease: `key` is not the task's current, leased attempt.
        """

    async def signal_run(self, signal: NewSignal) -> SignalOutcome | None:
        """Keep a signal for a run, delivering it at once if the run waits for it; None: no run.

        A repeat of a signal with the same non-empty request_id changes nothing.

        Raises:
            FailedPrecondition: the run has ended.
        """

    async def cancel_run(self, namespace: Namespace, run_id: str, *, failure: Failure) -> CancelOutcome | None:
        """Mark a run cancelled; None when there is no such run. An ended run is returned as it is.

        A waiting step gets the cancellation recorded as its wait's outcome and is ready at once;
        a step nobody runs (queued, or backing off before a retry) ends the run CANCELLED now; a
        running step is left to see the mark.
        """

    async def next_wait_at(self) -> datetime | None:
        """When the next wait times out (timer or signal timeout), if any does."""

    async def fire_due_waits(self) -> set[tuple[str, str]]:
        """Record the outcome of every wait whose time has come and make those tasks ready.

        A timer records a null result, a signal wait a SignalTimeoutError. Returns the
        (task_queue, graph key) pairs of the tasks made ready.
        """


class RequestStore(Protocol):
    """Which run asked what of an agent: how a reply finds its way back (A2A).

    A step that sends an agent a request records it as an activity of kind `a2a.request` named
    `a2a.<message id>`; a reply names that message id as its `correlation_id`.
    """

    async def run_of_request(self, namespace: Namespace, message_id: str) -> str | None:
        """The run whose step recorded the request `message_id`, or None."""

    async def requests_awaiting(self, namespace: Namespace, agent_id: str) -> list[tuple[str, str]]:
        """(run_id, request name) of the requests to this agent that unfinished runs' current steps made.

        A request names its agent when the step recorded it with `{"agent_id": ...}` as its result
        (`ctx.invoke_specialist(capability=...)` does): those are the runs to tell when the agent
        leaves without answering.
        """


class ArtifactStore(Protocol):
    """Artifact records: which run put which content (the content is in the blob store)."""

    async def add_artifact(self, artifact: Artifact) -> Artifact:
        """Record that a run put this content; a second record of the same (run, content) changes nothing.

        Returns:
            The stored record (with `created_at`): this one, or the one stored before.

        Raises:
            NotFound: the run does not exist.
        """

    async def find_artifact(self, namespace: Namespace, sha256: str) -> Artifact | None:
        """The oldest record of this content as an artifact by a run of `namespace`; None if none put it."""


class MetricsStore(Protocol):
    """Counts for the metrics endpoint, read on a scrape."""

    async def queue_depths(self) -> dict[tuple[Namespace, str], int]:
        """Ready tasks by namespace and task queue: visible now and unleased or with a lapsed lease.

        Queues with no ready task are left out. Read on a metrics scrape, not on the hot path.
        """

    async def count_runs_by_status(self) -> dict[tuple[Namespace, RunStatus], int]:
        """Runs by namespace and status; pairs no run has are left out. May scan every run: cache the answer."""

    async def count_runs_by_graph(self, namespace: Namespace) -> dict[tuple[str, int, RunStatus], int]:
        """A namespace's runs by graph id, version and status; triples no run has are left out.

        Scans the namespace's runs: for a page that shows it (the web UI's graphs), not the hot path.
        """


class RetentionStore(Protocol):
    """Pruning ended runs, and what the blob store's collection must keep."""

    async def prune_runs(
        self,
        *,
        ended_before: datetime,
        statuses: Sequence[RunStatus],
        limit: int,
        namespace: Namespace | None = None,
        dry_run: bool = False,
    ) -> int:
        """Delete up to `limit` runs that ended before `ended_before` with one of `statuses`.

        Only runs of `namespace` when given, of every namespace otherwise (the server's schedule).

        With each run go its steps, activity records, signals and artifact records; the blobs
        they referenced are left to `referenced_blobs` and the blob store's collection. Runs that
        have not ended are never touched. Returns how many were deleted (`dry_run`: would be).
        """

    async def referenced_blobs(self) -> set[str]:
        """The digests of every blob a stored payload or an artifact record still references.

        Reads every stored manifest: for the periodic blob collection, not the hot path.
        """


class Store(
    GraphStore,
    RunStore,
    TaskStore,
    ActivityStore,
    WaitStore,
    RequestStore,
    ArtifactStore,
    MetricsStore,
    RetentionStore,
    Protocol,
):
    """Durable state of the orchestrator. Each method is one short transaction.

    Every resource is keyed by its namespace: a method given one sees nothing of another, and the
    same run_id or graph_id may exist in two. Writes by a worker are fenced by its `TaskKey`: a
    write whose attempt is not the task's current one, or whose worker does not hold the task's
    lease, raises `StaleLease` and changes nothing.
    """

    async def aclose(self) -> None:
        """Release connections; idempotent."""

    async def ping(self) -> None:
        """One round trip to the database; raises if it cannot be reached (for health checks)."""

    async def watch(self, listener: ReadyListener) -> None:
        """Tell `listener` what other servers on this database do, until cancelled.

        A backend that cannot push (SQLite: one server per file) returns at once without calling
        it; the caller then sweeps for work on a timer.
        """
