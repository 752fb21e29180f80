"""Long-poll matching: park pollers until a task they can take is ready, then wake one of them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cmo_server.domain import Task
from cmo_server.store import Store

__all__ = ["TaskDispatcher"]

logger = logging.getLogger(__name__)

DEPARTED_FOR = 300.0
"""Seconds a worker that left is refused new polls (its polls in flight as it left arrive late)."""
_CLOCK_SLACK = 0.005
"""Seconds added to a wake-up at a database time: a little late beats early (the claim compares
with the database's clock)."""


@dataclass(eq=False, slots=True)
class _Waiter:
    """A parked poll. `woken` resolves to None (look again) or to a task handed to it directly."""

    queues: frozenset[str]
    graph_keys: frozenset[str]
    worker_id: str
    woken: asyncio.Future[Task | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    gone: bool = False
    """The poll has returned: nothing handed to it now would be delivered."""
    claiming: bool = False
    """Its claim query is running: it may come back with a task of its own."""
    departed: bool = False
    """Its worker left: the poll returns empty-handed, whether or not its caller is still there."""

    def wants(self, queue: str, key: str) -> bool:
        return queue in self.queues and key in self.graph_keys

    def wake(self, task: Task | None = None) -> bool:
        if self.woken.done() or self.gone:
            return False
        self.woken.set_result(task)
        return True


class TaskDispatcher:
    """Hands ready tasks to long-polling workers.

    Tasks this process enqueues wake one matching poller at once. Without pushed notifications
    (SQLite), tasks that become ready by time (retry back-off, expired leases) are found by a
    sweep every `sweep_interval`. With them (Postgres), tasks another server makes ready, now or
    at a later time, wake a poller when they become claimable; what nobody announces is a lease
    that lapses, so the sweep runs every `lease_check_interval` (half a lease: a dead worker's task
    is found at most half a lease after its lease ran out), and never more than
    `fallback_interval` apart. Sweeps run only while someone is waiting.
    """

    def __init__(
        self,
        store: Store,
        *,
        sweep_interval: float = 1.0,
        fallback_interval: float = 30.0,
        lease_check_interval: float = 15.0,
    ) -> None:
        self._store = store
        self._sweep_interval = sweep_interval
        self._pushed_interval = max(min(fallback_interval, lease_check_interval), sweep_interval)
        self._waiters: list[_Waiter] = []
        self._closed = False
        self._has_waiters = asyncio.Event()
        self._pushed = False
        self._sweep_now = asyncio.Event()
        self._later: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._empty: set[tuple[str, str]] = set()
        """(queue, graph version) pairs a claim found empty, with no wake-up for them since."""
        self._wakeups = 0
        """Counts wake-ups, so a claim that overlapped one does not mark its queues empty."""
        self._departed: dict[str, float] = {}
        """Workers that said they left, and until when their polls are refused."""

    async def poll(
        self,
        *,
        task_queues: Sequence[str],
        graph_keys: Sequence[str],
        worker_id: str,
        lease: timedelta,
        wait: float,
    ) -> Task | None:
        """Claim a task, waiting up to `wait` seconds for one to become ready."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        if self._departed and self._departed.get(worker_id, 0.0) > loop.time():
            return None
        while not self._closed:
            # Park before claiming, so a task enqueued between the claim and the wait is not missed.
            waiter = _Waiter(frozenset(task_queues), frozenset(graph_keys), worker_id)
            self._waiters.append(waiter)
            self._has_waiters.set()
            task: Task | None = None
            try:
                if not self._known_empty(task_queues, graph_keys):
                    waiter.claiming = True
                    wakeups = self._wakeups
                    try:
                        task = await self._store.claim_task(
                            task_queues=task_queues, graph_keys=graph_keys, worker_id=worker_id, lease=lease
                        )
                    finally:
                        waiter.claiming = False
                    if task is not None:
                        return task
                    if wakeups == self._wakeups:
                        self._empty.update((q, k) for q in task_queues for k in graph_keys)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(waiter.woken), remaining)
                # Checked after a time-out too: a hand-off may land in the same loop turn.
                if waiter.woken.done() and (task := waiter.woken.result()) is not None:
                    return task
                if loop.time() >= deadline or waiter.departed:
                    return None
            finally:
                waiter.gone = True
                self._remove(waiter)
                if waiter.woken.done() and waiter.woken.result() is None and task is not None:
                    # This poller got a task anyway: hand the wake-up on to another one.
                    self.wake_all(task_queues, graph_keys)
        return None

    def reserve(self, task_queue: str, key: str) -> _Waiter | None:
        """Take a parked poller that can run a task of this queue and graph version, if any.

        The caller leases the task to `waiter.worker_id`, then calls `hand_over`.
        """
        for waiter in self._waiters:
            # Not one whose claim is running: it may return with another task, and the task
            # leased to it would have to be handed back (a wasted attempt).
            if waiter.wants(task_queue, key) and not waiter.woken.done() and not waiter.claiming:
                self._remove(waiter)
                return waiter
        return None

    def hand_over(self, waiter: _Waiter, task: Task | None) -> bool:
        """Give a reserved poller its task (None: nothing to give, it looks again).

        Returns False when the poll returned meanwhile: the caller must give the task back.
        """
        return waiter.wake(task) or task is None

    @property
    def parked(self) -> int:
        """Polls waiting for a task right now."""
        return len(self._waiters)

    def notify(self, task_queue: str, key: str) -> None:
        """A task of this queue and graph version was enqueued: wake one poller that can take it."""
        self._may_have_tasks(task_queue, key)
        for waiter in self._waiters:
            if waiter.wants(task_queue, key) and waiter.wake():
                return

    def wake_all(self, task_queues: Sequence[str], graph_keys: Sequence[str]) -> None:
        """Wake every poller that may take a task of these queues and graph versions."""
        for queue in task_queues:
            for key in graph_keys:
                self._may_have_tasks(queue, key)
        for waiter in self._waiters:
            if any(waiter.wants(q, k) for q in task_queues for k in graph_keys):
                waiter.wake()

    def _known_empty(self, task_queues: Sequence[str], graph_keys: Sequence[str]) -> bool:
        empty = self._empty
        return bool(empty) and all((q, k) in empty for q in task_queues for k in graph_keys)

    def _may_have_tasks(self, task_queue: str, key: str) -> None:
        self._wakeups += 1
        self._empty.discard((task_queue, key))

    def _forget_empty(self) -> None:
        """Tasks may have become ready unannounced (notifications stopped or resumed): claim again."""
        self._wakeups += 1
        self._empty.clear()

    def worker_departed(self, worker_id: str) -> None:
        """The worker left (it deregistered): its parked polls return empty, new ones at once.

        A worker that stops cancels its polls, but a cancellation can miss a poll still on its
        way to the server, which would then be handed a task nobody takes until its lease lapses.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._departed = {w: t for w, t in self._departed.items() if t > now}
        self._departed[worker_id] = now + DEPARTED_FOR
        for waiter in self._waiters:
            if waiter.worker_id == worker_id:
                waiter.departed = True
                waiter.wake()

    def close(self) -> None:
        """Stop taking polls; parked pollers return empty-handed."""
        self._closed = True
        for handle in self._later.values():
            handle.cancel()
        self._later.clear()
        self._sweep_now.set()
        for waiter in self._waiters:
            waiter.wake()

    # -- what other servers do (see Store.watch) --------------------------------------------------

    def task_ready(self, task_queue: str, graph_key: str, at: datetime) -> None:
        """Another server made a task claimable from `at`: wake a poller then."""
        delay = (at - datetime.now(UTC)).total_seconds()
        if delay <= 0:
            self.notify(task_queue, graph_key)
            return
        key = (task_queue, graph_key)
        earlier = self._later.get(key)
        if earlier is not None and earlier.when() <= asyncio.get_running_loop().time() + delay:
            return  # a wake-up for this queue comes sooner; the poller it wakes claims the oldest task
        if earlier is not None:
            earlier.cancel()
        self._later[key] = asyncio.get_running_loop().call_later(delay + _CLOCK_SLACK, self._wake_later, key)

    def _wake_later(self, key: tuple[str, str]) -> None:
        self._later.pop(key, None)
        self.wake_all([key[0]], [key[1]])

    def push_started(self) -> None:
        """Notifications flow: sweep once now for what was missed, then rarely."""
        self._pushed = True
        self._forget_empty()
        self._sweep_now.set()

    def push_stopped(self) -> None:
        """Notifications stopped: sweep every `sweep_interval` until they resume."""
        self._pushed = False
        self._forget_empty()
        self._sweep_now.set()

    async def run_sweeps(self) -> None:
        """Find tasks that became ready without a notification; runs until cancelled."""
        while not self._closed:
            await self._has_waiters.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sweep_now.wait(), self._next_sweep_in())
            self._sweep_now.clear()
            if not self._waiters:
                self._has_waiters.clear()
                continue
            try:
                ready = await self._store.ready_queues(self._parked_queues())
            except Exception:
                logger.exception("sweep for ready tasks failed; retrying")
                continue
            for queue, key in ready:
                self.wake_all([queue], [key])

    def _next_sweep_in(self) -> float:
        """Seconds until the next sweep: soon without notifications, else to catch lapsed leases."""
        return self._pushed_interval if self._pushed else self._sweep_interval

    def _parked_queues(self) -> list[str]:
        return sorted({q for w in self._waiters for q in w.queues})

    def _remove(self, waiter: _Waiter) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)
