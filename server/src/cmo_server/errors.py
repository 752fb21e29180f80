"""Domain errors raised by the engine and the stores; `cmo_server.api` maps each to a gRPC status.

CmoServerError
 ├── InvalidArgument     INVALID_ARGUMENT
 ├── NotFound            NOT_FOUND
 ├── AlreadyExists       ALREADY_EXISTS
 ├── StaleLease          FAILED_PRECONDITION
 ├── ResourceExhausted   RESOURCE_EXHAUSTED
 └── Unavailable         UNAVAILABLE
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "FailedPrecondition",
    "CmoServerError",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "StaleLease",
    "Unauthenticated",
    "Unavailable",
    "shown",
]

MAX_SHOWN = 64
"""Characters of a value that an error message echoes: a status must stay far below gRPC's
metadata limit whatever a request held."""


def shown(value: object) -> str:
    """`repr(value)` for an error message, cut past `MAX_SHOWN` characters (a string's length is told)."""
    text = repr(value)
    if len(text) <= MAX_SHOWN:
        return text
    length = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return f"{text[:MAX_SHOWN]}...{length}"


class CmoServerError(Exception):
    """Base of the errors a client may see; the message is safe to show."""


class InvalidArgument(CmoServerError):
    """A request field is missing, malformed or out of range."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFound(CmoServerError):
    """The named run, graph or task does not exist."""


class AlreadyExists(CmoServerError):
    """Something with this identity exists and differs from what was asked."""


class FailedPrecondition(CmoServerError):
    """The request is valid but the target is not in a state that allows it (a finished run)."""


class StaleLease(CmoServerError):
    """The attempt is no longer the current one: a newer attempt owns the task, or it is done."""

    def __init__(self, run_id: str, step_index: int, attempt: int) -> None:
        super().__init__(
            f"attempt {attempt} of step {step_index} of run {run_id} is no longer current "
            "(its lease expired and another attempt took the task, or the step is finished)"
        )
        self.run_id = run_id
        self.step_index = step_index
        self.attempt = attempt


class ResourceExhausted(CmoServerError):
    """A size or rate limit was exceeded; `retry_after` seconds, when waiting will do."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(CmoServerError):
    """The server cannot serve right now (shutting down, database unreachable); try again."""


class Unauthenticated(CmoServerError):
    """The call carries no credentials, or ones that do not verify. The message says no more."""


class PermissionDenied(CmoServerError):
    """The caller is who it says, but may not make this call."""
