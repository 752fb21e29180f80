"""What becomes of an attempt that did not complete: the rule FailTask applies, as a pure decision."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from cmo_server.domain import AttemptEnd, FailDecider, FailDecision, Failure, NodeSpec, RunStatus, TaskRef, TaskState
from cmo_server.errors import FailedPrecondition, StaleLease

__all__ = ["FailOutcome", "failure_decider"]


@dataclass(frozen=True, slots=True)
class FailOutcome:
    """What became of a failed attempt."""

    will_retry: bool
    retry_after: timedelta
    run_status: RunStatus


def failure_decider(ref: TaskRef, node: NodeSpec, failure: Failure, *, release: bool, cancelled: bool) -> FailDecider:
    """The decision of one FailTask, made by the store on the task as it holds it.

    A release gives the task back. A failure of a run being cancelled ends it CANCELLED (there is
    no point retrying what was asked to stop); `cancelled`, the worker's word that it stopped for
    that reason, is refused when the run is not being cancelled. Any other failure is retried per
    the node's policy, else it fails the run.
    """

    def decide(task: TaskState) -> FailDecision:
        if (task.graph_id, task.graph_version, task.node_id) != (ref.graph_id, ref.graph_version, ref.node_id):
            raise StaleLease(ref.run_id, ref.step_index, ref.attempt)  # a token edited to name another node
        if release:
            return FailDecision(AttemptEnd.RELEASE, failure)
        if cancelled and not task.cancel_requested:
            raise FailedPrecondition(f"run {task.run_id} is not being cancelled: report a failure without `cancelled`")
        attempt_failure = replace(failure, node_id=task.node_id, step_index=ref.step_index, attempt=ref.attempt)
        if task.cancel_requested:
            return FailDecision(AttemptEnd.CANCEL, attempt_failure)
        failures = task.failures + 1
        if node.retry.allows_another(failures, failure.type, non_retryable=failure.non_retryable):
            return FailDecision(AttemptEnd.RETRY, attempt_failure, node.retry.delay_after(failures))
        return FailDecision(AttemptEnd.FAIL, attempt_failure)

    return decide
