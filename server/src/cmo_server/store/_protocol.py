"""The storage contract every backend meets, proved by tests/integration/contract."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from cmo_server.domain import (
    ActivityRecord,
    Artifact,
    CompleteOutcome,
    Failure,
    GraphSpec,
    NewFork,
    NewRun,
    Run,
    RunStatus,
    Step,
    StepCommit,
    Task,
    TaskKey,
    TaskState,
)

__all__ = ["RunPage", "Store"]

RunPage = tuple[list[Run], str]
"""Runs and the token of the next page ("" when there is none)."""


class Store(Protocol):
    """Durable state of the orchestrator. Each method is one short transaction.

    Writes by a worker are fenced by `TaskKey.attempt`: a write whose attempt is not the task's
    current one raises `StaleLease` and changes nothing.
    """

    async def aclose(self) -> None:
        """Release connections; idempotent."""

    async def register_graph(self, graph: GraphSpec) -> bool:
        """Store a graph version; True if new, False if identical to the stored one.

        Raises:
            AlreadyExists: the version is registered with another definition.
        """

    async def get_graph(self, graph_id: str, version: int) -> GraphSpec | None:
        """A graph version; version 0 means the newest."""

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

    async def terminate_run(self, run_id: str, *, failure: Failure) -> Run | None:
        """End an unfinished run as TERMINATED with this failure, withdrawing its task.

        A run that has ended already is returned unchanged; None when there is no such run.
        """

    async def get_run(self, run_id: str) -> Run | None:
        """One run."""

    async def list_runs(
        self, *, graph_id: str = "", status: RunStatus | None = None, limit: int = 100, page_token: str = ""
    ) -> RunPage:
        """Runs, newest first, optionally filtered."""

    async def get_steps(self, run_id: str, *, after: int = -1, limit: int = 1000) -> list[Step]:
        """Checkpoints of a run with step_index > after, in order."""

    async def claim_task(
        self, *, task_queues: Sequence[str], graph_keys: Sequence[str], worker_id: str, lease: timedelta
    ) -> Task | None:
        """Lease the oldest ready task of these queues and graph versions, attempt + 1.

        A task is ready when it is visible and unleased or its lease has expired. It carries the
        step's activities recorded by earlier attempts.
        """

    async def ready_queues(self, task_queues: Sequence[str]) -> set[tuple[str, str]]:
        """(task_queue, graph key) pairs that have a ready task, among these queues."""

    async def next_ready_at(self, task_queues: Sequence[str]) -> datetime | None:
        """When the next task of these queues becomes ready, if none is ready now."""

    async def extend_lease(self, key: TaskKey, *, worker_id: str, lease: timedelta) -> datetime:
        """Push the lease of the current attempt forward; returns the new expiry."""

    async def complete_step(self, commit: StepCommit) -> CompleteOutcome:
        """Checkpoint a step and move the run on (next task or completion), atomically.

        Re-sending a step this attempt completed before is a no-op (`duplicate=True`).
        """

    async def record_activity(self, key: TaskKey, activity: ActivityRecord) -> ActivityRecord:
        """Record an activity of the current attempt; the first record of a (step, seq) wins.

        Returns:
            The stored record: this one, or the one recorded before for the same seq.

        Raises:
            StaleLease: `key` is not the task's current, leased attempt.
        """

    async def get_task(self, run_id: str) -> TaskState | None:
        """The run's current task, if the run is not finished."""

    async def retry_task(self, key: TaskKey, *, failure: Failure, delay: timedelta) -> None:
        """Count a failed attempt and make the step ready again after `delay`."""

    async def release_task(self, key: TaskKey) -> None:
        """Give the task back unrun: ready at once, no failure counted."""

    async def fail_run(self, key: TaskKey, *, failure: Failure) -> None:
        """Finish the run as FAILED with this failure."""

    async def add_artifact(self, artifact: Artifact) -> Artifact:
        """Record that a run put this content; a second record of the same (run, content) changes nothing.

        Returns:
            The stored record (with `created_at`): this one, or the one stored before.

        Raises:
            NotFound: the run does not exist.
        """

    async def find_artifact(self, sha256: str) -> Artifact | None:
        """The oldest record of this content as an artifact, by any run; None if no run put it."""
