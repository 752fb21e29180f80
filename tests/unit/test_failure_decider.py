from datetime import timedelta

import pytest

from cmo_server.domain import DEFAULT_NAMESPACE, AttemptEnd, Failure, NodeSpec, RetrySpec, TaskRef, TaskState
from cmo_server.engine._failures import failure_decider
from cmo_server.errors import FailedPrecondition, StaleLease

REF = TaskRef(DEFAULT_NAMESPACE, "r", 2, 3, "n", "g", 1)
NODE = NodeSpec("n", retry=RetrySpec(max_attempts=3, initial_interval=timedelta(seconds=1), backoff=2))
BOOM = Failure("boom", type="ValueError")


def task(*, failures: int = 0, cancel_requested: bool = False, node_id: str = "n") -> TaskState:
    return TaskState(DEFAULT_NAMESPACE, "r", 2, 3, node_id, "g", 1, "q", failures, "w", cancel_requested)


def decide(state: TaskState, failure: Failure = BOOM, *, release: bool = False, cancelled: bool = False):
    return failure_decider(REF, NODE, failure, release=release, cancelled=cancelled)(state)


def test_a_failure_is_retried_with_back_off_until_the_policy_is_spent():
    first = decide(task(failures=0))
    assert (first.end, first.delay) == (AttemptEnd.RETRY, timedelta(seconds=1))
    assert (first.failure.node_id, first.failure.step_index, first.failure.attempt) == ("n", 2, 3)
    assert decide(task(failures=1)).delay == timedelta(seconds=2)
    assert decide(task(failures=2)).end is AttemptEnd.FAIL  # the third failure of three attempts


def test_a_non_retryable_failure_fails_the_run_at_once():
    assert decide(task(), Failure("no", type="ValueError", non_retryable=True)).end is AttemptEnd.FAIL


def test_a_release_counts_nothing():
    assert decide(task(failures=2), release=True).end is AttemptEnd.RELEASE


def test_cancellation_is_explicit_and_any_failure_of_a_run_being_cancelled_ends_it_cancelled():
    with pytest.raises(FailedPrecondition):
        decide(task(), cancelled=True)  # nobody asked for it
    assert decide(task(cancel_requested=True), cancelled=True).end is AttemptEnd.CANCEL
    assert decide(task(cancel_requested=True)).end is AttemptEnd.CANCEL  # not retried


def test_a_token_naming_another_node_than_the_task_is_stale():
    with pytest.raises(StaleLease):
        decide(task(node_id="other"))
