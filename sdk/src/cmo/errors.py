"""Errors the SDK raises, and `ApplicationError` for node code to raise.

CmoError
 ├── RpcError                 the server answered with an error status
 │    └── RunNotFoundError    no run has this run_id
 ├── RunFailedError           a run ended FAILED, CANCELLED or TERMINATED
 ├── WaitTimeoutError         waiting for a run's result timed out (also a TimeoutError)
 ├── GraphError               a graph definition is invalid
 ├── ActivityError            an activity failed for good (recorded, raised again on replay)
 │    └── HttpStatusError     ctx.http(..., raise_for_status=True) got an error status
 ├── NondeterminismError      node code asked for another activity than the recorded one
 ├── RunCancelledError        CancelRun was called: raised at the node's next ctx call
 ├── SignalTimeoutError       ctx.wait_for_signal ran out (also a TimeoutError)
 └── ApplicationError         raised by node code; retried per the node's policy unless
                              non_retryable
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cmo._types import FailureInfo

__all__ = [
    "ActivityError",
    "ApplicationError",
    "CmoError",
    "GraphError",
    "HttpStatusError",
    "NondeterminismError",
    "RpcError",
    "RunFailedError",
    "RunCancelledError",
    "RunNotFoundError",
    "SignalTimeoutError",
    "SpecialistTimeoutError",
    "SpecialistUnavailableError",
    "WaitTimeoutError",
]


class CmoError(Exception):
    """Base of every error CMO raises."""


class RpcError(CmoError):
    """The server answered a call with an error status."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        """The gRPC status name, e.g. "INVALID_ARGUMENT"."""
        self.message = message
        """The server's message; it names the offending field for bad input."""


class RunNotFoundError(RpcError):
    """No run has this run_id."""

    def __init__(self, run_id: str, message: str) -> None:
        super().__init__("NOT_FOUND", message)
        self.run_id = run_id


class RunFailedError(CmoError):
    """The run did not complete: it failed, was cancelled or terminated."""

    def __init__(self, run_id: str, status: str, failure: FailureInfo | None) -> None:
        detail = (
            f": {failure.type or 'error'} at step {failure.step_index} ({failure.node_id}): {failure.message}"
            if failure
            else ""
        )
        super().__init__(f"run {run_id} {status.lower()}{detail}")
        self.run_id = run_id
        self.status = status
        self.failure = failure
        """Why it failed, as the server recorded it."""


class WaitTimeoutError(CmoError, TimeoutError):
    """The run was not finished when the wait ran out."""


class GraphError(CmoError, ValueError):
    """A graph definition is invalid (unknown node, missing entry, duplicate edge …)."""


class ActivityError(CmoError):
    """An activity failed after its own retries.

    The failure is recorded, so a replay of the attempt raises it again at the same point; a later
    attempt of the step (a node retry) runs the activity again instead.
    """

    def __init__(self, name: str, seq: int, type: str, message: str) -> None:
        super().__init__(f"activity {name!r} (seq {seq}) failed: {type}: {message}")
        self.name = name
        self.seq = seq
        self.type = type
        """The original error's type name."""
        self.message = message


_STATUS_MESSAGE = re.compile(r"(?P<method>\S+) (?P<url>\S+) answered (?P<status>\d{3})(?:: (?P<body>.*))?", re.DOTALL)


class HttpStatusError(ActivityError):
    """`ctx.http(..., raise_for_status=True)` got an error status (4xx, 5xx) after its own retries.

    Recorded as the call's failure, so a replay raises it again with the same status, URL and
    body excerpt; a node retry sends the request again.
    """

    def __init__(self, name: str, seq: int, *, method: str, url: str, status: int, body: str) -> None:
        message = f"{method} {url} answered {status}" + (f": {body}" if body else "")
        super().__init__(name, seq, type(self).__name__, message)
        self.method = method
        self.url = url
        """The request's URL without its query, fragment or credentials (it may carry secrets)."""
        self.status = status
        self.body = body
        """The start of the response body, on one line."""

    @classmethod
    def from_message(cls, name: str, seq: int, message: str) -> HttpStatusError | None:
        """Rebuild the error from its recorded message; None if the message is not one of its own."""
        parsed = _STATUS_MESSAGE.fullmatch(message)
        if parsed is None:
            return None
        method, url, status = parsed["method"], parsed["url"], int(parsed["status"])
        return cls(name, seq, method=method, url=url, status=status, body=parsed["body"] or "")


class NondeterminismError(CmoError):
    """Node code asked for a different activity than the one recorded at this point of the step.

    The code changed since the step first ran, or it is not deterministic (it branches on the
    clock, randomness or I/O outside `ctx`). Retrying cannot help, so the step fails at once.
    """

    non_retryable = True

    def __init__(self, *, step_index: int, seq: int, recorded: str, requested: str) -> None:
        super().__init__(
            f"nondeterminism at step {step_index}, activity seq {seq}: recorded {recorded}, "
            f"but the code asked for {requested}"
        )
        self.step_index = step_index
        self.seq = seq
        self.recorded = recorded
        self.requested = requested


class RunCancelledError(CmoError):
    """The run was asked to stop (CancelRun): raised at the node's next ctx call.

    Let it propagate and the run ends CANCELLED; catch it to clean up first (activities still
    run), then raise it again. Like any outcome it is recorded, so a replay raises it at the same
    point.
    """

    non_retryable = True

    def __init__(self, reason: str) -> None:
        super().__init__(f"the run was cancelled: {reason}" if reason else "the run was cancelled")
        self.reason = reason


class SignalTimeoutError(CmoError, TimeoutError):
    """`ctx.wait_for_signal` ran out before the signal arrived (recorded, so replays raise it too)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no signal {name!r} arrived in time")
        self.name = name


class SpecialistTimeoutError(CmoError, TimeoutError):
    """`ctx.invoke_specialist` had no answer within its timeout (a durable timer; replays raise it too)."""

    def __init__(self, specialist: str, timeout: timedelta) -> None:
        super().__init__(f"specialist {specialist!r} did not answer within {timeout}")
        self.specialist = specialist


class SpecialistUnavailableError(CmoError):
    """`ctx.invoke_specialist(capability=...)` found no HEALTHY agent to ask, or every one it asked left unanswered."""

    def __init__(self, capability: str, asked: list[str]) -> None:
        tried = f"; asked {', '.join(asked)}, each left without answering" if asked else ""
        super().__init__(f"no HEALTHY agent with capability {capability!r} answered{tried}")
        self.capability = capability
        self.asked = list(asked)


class ApplicationError(CmoError):
    """Raise from node code to fail the attempt with a message and, optionally, no retry."""

    def __init__(self, message: str, *, type: str | None = None, non_retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.type = type or "ApplicationError"
        """Matched against the node retry policy's non_retryable_errors."""
        self.non_retryable = non_retryable
        """Fail the run at once instead of retrying."""
