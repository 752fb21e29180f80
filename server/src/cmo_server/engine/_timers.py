"""When to end waits whose time has come: timers firing, signal waits timing out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

__all__ = ["WaitTimers"]

logger = logging.getLogger(__name__)

_SLACK_SECONDS = 0.005
"""Fire a little late rather than early: the database's clock decides what is due."""


class WaitTimers:
    """Calls `fire` when a wait may be due.

    A wait this process started fires at its time, from a local timer. Waits it cannot know of
    (started before a restart, or by another replica) are caught by a sweep every
    `sweep_interval`, which bounds how late any timer fires.
    """

    def __init__(self, fire: Callable[[], Awaitable[None]], *, sweep_interval: float) -> None:
        self._fire = fire
        self._sweep_interval = sweep_interval
        self._due = asyncio.Event()
        self._handles: set[asyncio.TimerHandle] = set()
        self._closed = False

    def wake_at(self, at: datetime) -> None:
        """Fire at `at` (besides the sweeps)."""
        delay = max((at - datetime.now(UTC)).total_seconds(), 0.0) + _SLACK_SECONDS
        handle = asyncio.get_running_loop().call_later(delay, self._ring)
        self._handles.add(handle)

    def _ring(self) -> None:
        self._handles = {h for h in self._handles if not h.cancelled() and h.when() > asyncio.get_running_loop().time()}
        self._due.set()

    async def run(self) -> None:
        """Fire on every local timer and every sweep; runs until closed or cancelled."""
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), self._sweep_interval)
            self._due.clear()
            if self._closed:
                return
            try:
                await self._fire()
            except Exception:
                logger.exception("ending due waits failed; retrying")

    def close(self) -> None:
        """Stop: cancel the local timers and end `run`."""
        self._closed = True
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
        self._due.set()
