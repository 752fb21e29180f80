"""Backpressure for a consumer: stop reading at a maximum of pending deliveries, resume at 80%."""

from __future__ import annotations

__all__ = ["RESUME_AT", "Backpressure"]

RESUME_AT = 0.8
"""A paused consumer reads again once its pending deliveries are down to this share of the maximum."""


class Backpressure:
    """Whether a consumer holding `pending` unsettled deliveries may read more (with hysteresis)."""

    def __init__(self, max_pending: int) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be 1 or more, got {max_pending}")
        self.max_pending = max_pending
        self._paused = False

    def held_back(self, pending: int) -> bool:
        """True while paused: from reaching the maximum until back down to 80% of it."""
        if pending >= self.max_pending:
            self._paused = True
        elif self._paused and pending <= self.max_pending * RESUME_AT:
            self._paused = False
        return self._paused

    def room(self, pending: int) -> int:
        """How many more deliveries may be taken now."""
        return max(self.max_pending - pending, 0)
