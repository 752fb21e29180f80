"""A transport in this process's memory, for users' unit tests: the contract of every transport."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from cmo.a2a.topics import check_pattern, matches
from cmo.a2a.transports._flow import Backpressure
from cmo.a2a.transports._protocol import Counters, DeadLetterRecord

__all__ = ["MemoryTransport"]


@dataclass(eq=False, slots=True)
class _Entry:
    topic: str
    data: bytes
    message_id: str
    deliveries: int = 0
    holder: _Subscription | None = None
    due: float = 0.0  # when a delivery in flight is given up on (its consumer is presumed dead)


@dataclass(eq=False, slots=True)
class _Group:
    name: str
    pattern: str
    ready: collections.deque[_Entry] = field(default_factory=collections.deque)
    in_flight: dict[int, _Entry] = field(default_factory=dict)
    readers: weakref.WeakSet[_Subscription] = field(default_factory=weakref.WeakSet)

    def changed(self) -> None:
        """Wake every reader of the group to look again (no lock: one event loop, one owner)."""
        for reader in self.readers:
            reader.wakeup.set()


class MemoryTransport:
    """Topics, consumer groups, acks, redelivery, dead letters and backpressure, in memory."""

    def __init__(self) -> None:
        self.counters = Counters()
        self._groups: dict[tuple[str, str], _Group] = {}
        self._dead: list[DeadLetterRecord] = []
        self._ids = itertools.count(1)
        self._subscriptions: weakref.WeakSet[_Subscription] = weakref.WeakSet()
        self._closed = False

    async def publish(self, topic: str, data: bytes, *, message_id: str) -> None:
        """Append the message for every group whose pattern matches `topic`."""
        if self._closed:
            raise RuntimeError("the transport is closed")
        self.counters.published += 1
        for group in self._groups.values():
            if matches(group.pattern, topic):
                group.ready.append(_Entry(topic, bytes(data), message_id))
                group.changed()

    async def subscribe(
        self,
        pattern: str,
        *,
        group: str,
        consumer: str,
        max_deliveries: int = 5,
        ack_wait: float = 30.0,
        max_pending: int = 100,
    ) -> _Subscription:
        """A consumer of `group` on `pattern` (the group is made on first use and kept)."""
        check_pattern(pattern)
        state = self._groups.setdefault((group, pattern), _Group(group, pattern))
        subscription = _Subscription(self, state, consumer, max_deliveries, ack_wait, max_pending)
        self._subscriptions.add(subscription)
        return subscription

    async def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        """The oldest dead letters, up to `limit`."""
        return self._dead[:limit]

    async def health(self) -> dict[str, Any]:
        """Always ok while open; the counters and what this process's subscriptions hold."""
        pending = sum(s.pending for s in self._subscriptions)
        return {"ok": not self._closed, "detail": "in memory", **self.counters.as_dict(), "pending": pending}

    async def close(self) -> None:
        """Refuse further publishing."""
        self._closed = True

    def _dead_letter(self, group: _Group, entry: _Entry, reason: str, detail: str) -> None:
        self.counters.dead_lettered += 1
        self._dead.append(
            DeadLetterRecord(entry.topic, entry.message_id, entry.data, reason, detail, entry.deliveries, group.name)
        )


class _Subscription:
    def __init__(
        self,
        transport: MemoryTransport,
        group: _Group,
        consumer: str,
        max_deliveries: int,
        ack_wait: float,
        max_pending: int,
    ) -> None:
        self._transport = transport
        self._group = group
        self.consumer = consumer
        self._max_deliveries = max_deliveries
        self._ack_wait = ack_wait
        self._mine: set[int] = set()
        self.wakeup = asyncio.Event()
        group.readers.add(self)
        self._flow = Backpressure(max_pending)
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._mine)

    def __aiter__(self) -> AsyncIterator[_MemoryDelivery]:
        return self._deliveries()

    async def close(self) -> None:
        """Stop reading. Deliveries still held are not given back: they come again after `ack_wait`."""
        self._closed = True
        self.wakeup.set()

    async def _deliveries(self) -> AsyncIterator[_MemoryDelivery]:
        loop = asyncio.get_running_loop()
        group = self._group
        while not self._closed:
            # Cleared before looking, so a change made after the look still wakes the wait.
            self.wakeup.clear()
            if self._flow.held_back(self.pending) or (not self._take_expired(loop.time()) and not group.ready):
                await self._wait(loop.time())
                continue
            entry = group.ready.popleft()
            if entry.deliveries >= self._max_deliveries:
                self._transport._dead_letter(
                    group, entry, "max_deliveries", f"not acked in {self._max_deliveries} deliveries"
                )
                continue
            entry.deliveries += 1
            key = next(self._transport._ids)
            entry.holder, entry.due = self, loop.time() + self._ack_wait
            group.in_flight[key] = entry
            self._mine.add(key)
            counters = self._transport.counters
            counters.delivered += 1
            counters.redelivered += entry.deliveries > 1
            yield _MemoryDelivery(self, key, entry)

    def _take_expired(self, now: float) -> bool:
        """Put deliveries whose consumer has not answered within ack_wait back in line."""
        group = self._group
        expired = [k for k, e in group.in_flight.items() if e.due <= now]
        for key in expired:
            entry = group.in_flight.pop(key)
            if entry.holder is not None:
                entry.holder._mine.discard(key)
            group.ready.appendleft(entry)
        return bool(group.ready)

    async def _wait(self, now: float) -> None:
        dues = [e.due for e in self._group.in_flight.values()]
        timeout = max(min(dues) - now, 0.001) if dues else None
        with contextlib.suppress(TimeoutError):
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that lands as the wait completes, and a stopped consumer would then hang.
            async with asyncio.timeout(timeout):
                await self.wakeup.wait()

    def _settle(self, key: int) -> _Entry | None:
        """The delivery's entry, if it is still this subscription's to settle."""
        if key not in self._mine:
            return None
        self._mine.discard(key)
        return self._group.in_flight.pop(key, None)

    async def _notify(self) -> None:
        self._group.changed()


_later: set[asyncio.Future[None]] = set()
"""Nak'ed deliveries waiting out their delay."""


@dataclass(frozen=True, slots=True)
class _MemoryDelivery:
    _subscription: _Subscription
    _key: int
    _entry: _Entry

    @property
    def topic(self) -> str:
        return self._entry.topic

    @property
    def data(self) -> bytes:
        return self._entry.data

    @property
    def message_id(self) -> str:
        return self._entry.message_id

    @property
    def deliveries(self) -> int:
        return self._entry.deliveries

    async def ack(self) -> None:
        if self._subscription._settle(self._key) is not None:
            self._subscription._transport.counters.acked += 1
        await self._subscription._notify()

    async def nak(self, delay: float = 0.0) -> None:
        entry = self._subscription._settle(self._key)
        if entry is None:
            return
        group = self._subscription._group
        if delay <= 0:
            group.ready.appendleft(entry)
            await self._subscription._notify()
            return

        async def later() -> None:
            await asyncio.sleep(delay)
            group.ready.append(entry)
            await self._subscription._notify()

        task = asyncio.ensure_future(later())
        _later.add(task)
        task.add_done_callback(_later.discard)

    async def term(self, reason: str, detail: str = "") -> None:
        entry = self._subscription._settle(self._key)
        if entry is not None:
            self._subscription._transport._dead_letter(self._subscription._group, entry, reason, detail)
        await self._subscription._notify()
