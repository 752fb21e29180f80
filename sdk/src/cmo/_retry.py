"""Retry policy of a node."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How the server retries a node whose attempt failed."""

    max_attempts: int = 3
    """Attempts in all, the first included; 0 means no limit."""
    initial_interval: timedelta = timedelta(seconds=1)
    """Delay before the second attempt; multiplied by `backoff` after each failure."""
    backoff: float = 2.0
    """Growth of the delay from one attempt to the next (>= 1)."""
    max_interval: timedelta | None = None
    """Upper bound of the delay."""
    non_retryable_errors: tuple[str, ...] = ()
    """Error type names (e.g. "KeyError") that fail the run at once."""

    def __post_init__(self) -> None:
        if self.max_attempts < 0:
            raise ValueError(f"max_attempts must be >= 0, got {self.max_attempts}")
        if self.backoff < 1:
            raise ValueError(f"backoff must be >= 1, got {self.backoff}")
        if self.initial_interval < timedelta(0):
            raise ValueError("initial_interval must not be negative")
