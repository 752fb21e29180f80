"""What a step records: failures and activity records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

__all__ = ["ActivityRecord", "Failure"]


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
