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

    A wait this process started fires at its time, from a local timer, and so does one another
    server started when the store pushes it (`wait_scheduled`). Without pushed notifications a
    sweep every `sweep_interval` catches the rest (waits set before a restart, or elsewhere); with
    them, the sweep runs when the next wait the store knows of is due, or after
    `fallback_interval` at the latest, so an idle server reads almost nothing.
    """

    def __init__(
        self,
        fire: Callable[[], Awaitable[None]],
        next_at: Callable[[], Awaitable[datetime | None]],
        *,
        sweep_interval: float,
        fallback_interval: float = 30.0,
    ) -> None:
        self._fire = fire
        self._next_at = next_at
        self._sweep_interval = sweep_interval
        self._fallback_interval = max(fallback_interval, sweep_interval)
        self._due = asyncio.Event()
        self._handles: set[asyncio.TimerHandle] = set()
        self._pushed = False
        self._closed = False

    def wake_at(self, at: datetime) -> None:
        """Fire at `at` (besides the sweeps)."""
        delay = max((at - datetime.now(UTC)).total_seconds(), 0.0) + _SLACK_SECONDS
        handle = asyncio.get_running_loop().call_later(delay, self._ring)
        self._handles.add(handle)

    def _ring(self) -> None:
        now = asyncio.get_running_loop().time()
        self._handles = {h for h in self._handles if not h.cancelled() and h.when() > now}
        self._due.set()

    def push_started(self) -> None:
        """Waits set elsewhere are pushed from now on: sweep once now, then by the next due time."""
        self._pushed = True
        self._due.set()

    def push_stopped(self) -> None:
        """Pushes stopped: sweep every `sweep_interval` until they resume."""
        self._pushed = False
        self._due.set()

    async def run(self) -> None:
        """Fire on every local timer and every sweep; runs until closed or cancelled."""
        while not self._closed:
            timeout = await self._next_sweep_in()  # before the wait() coroutine exists: a cancel here leaks none
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), timeout)
            self._due.clear()
            if self._closed:
                return
            try:
                await self._fire()
            except Exception:
                logger.exception("ending due waits failed; retrying")

    async def _next_sweep_in(self) -> float:
        if not self._pushed:
            return self._sweep_interval
        try:
            at = await self._next_at()
        except Exception:
            logger.exception("reading when the next wait is due failed; sweeping on a timer")
            return self._sweep_interval
        if at is None:
            return self._fallback_interval
        delay = (at - datetime.now(UTC)).total_seconds() + _SLACK_SECONDS
        return min(max(delay, 0.0), self._fallback_interval)

    def close(self) -> None:
        """Stop: cancel the local timers and end `run`."""
        self._closed = True
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
        self._due.set()
