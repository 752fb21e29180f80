"""What the engine reports as it works, for metrics; the default reports to nobody."""

from __future__ import annotations

from datetime import datetime

from cmo_server.domain import ActivityRecord, Task, TaskKey

__all__ = ["EngineMetrics"]


class EngineMetrics:
    """Hooks the engine calls on its hot path. Each must be cheap and must not raise.

    This base class does nothing; `cmo_server.telemetry.PrometheusMetrics` counts.
    """

    def task_dispatched(self, task: Task) -> None:
        """A task was leased to a worker: claimed by a poll, handed to a parked poll, or eager.

        `task.previous_lease_expired` says the attempt before it lost its lease by expiry.
        """

    def poll_waited(self, seconds: float, *, got_task: bool) -> None:
        """A PollTask returned after `seconds`, with a task or empty-handed."""

    def step_completed(self, graph_id: str, node_id: str, *, started_at: datetime) -> None:
        """A step was checkpointed (once: a re-sent checkpoint is not reported again)."""

    def activity_recorded(self, key: TaskKey, activity: ActivityRecord) -> None:
        """A worker sent an activity record (possibly one it sent before)."""
