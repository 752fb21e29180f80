"""Waits of suspended steps, signals and cancellation, and what each transition did."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cmo_server.domain._namespaces import Namespace
from cmo_server.domain._records import ActivityRecord, Failure

if TYPE_CHECKING:
    from cmo_server.domain._runs import Run

__all__ = [
    "CANCELLED_ERROR",
    "CancelOutcome",
    "NewSignal",
    "SIGNAL_TIMEOUT_ERROR",
    "SignalOutcome",
    "TIMER_FIRED",
    "WAIT_KINDS",
    "WAIT_SIGNAL",
    "WAIT_TIMER",
    "Wait",
    "WaitOutcome",
    "WaitRequest",
    "cancelled_failure",
    "timeout_failure",
]


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
