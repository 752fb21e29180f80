"""Replay protection: an envelope's `ts` must be recent, and its message id not seen before.

The seen-set keeps each id for the window (then `ts` alone refuses it): in memory for one
process, or in Redis (`SET NX PX`) for every consumer of a group, so that a message replayed to
another instance is refused there too.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Protocol

from cmo.a2a._envelope import Envelope
from cmo.a2a._schemas import parse_rfc3339
from cmo.a2a.errors import RejectedEnvelope

__all__ = ["MemorySeenSet", "RedisSeenSet", "ReplayGuard", "SeenSet"]


class SeenSet(Protocol):
    """Message ids seen within a time to live."""

    async def add(self, message_id: str, ttl: float) -> bool:
        """Record the id; False if it was there already (a replay)."""


class MemorySeenSet:
    """A seen-set in this process, pruned as it is used."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._prune_at = 1024

    async def add(self, message_id: str, ttl: float) -> bool:
        """See `SeenSet.add`."""
        now = time.monotonic()
        if len(self._until) >= self._prune_at:
            # Pruned when it has doubled since the last time: amortised O(1) an add.
            self._until = {k: v for k, v in self._until.items() if v > now}
            self._prune_at = max(1024, 2 * len(self._until))
        if self._until.get(message_id, 0.0) > now:
            return False
        self._until[message_id] = now + ttl
        return True


class RedisSeenSet:
    """A seen-set shared through Redis: `SET <prefix><id> 1 NX PX <ttl>`."""

    def __init__(self, client: Any, *, key_prefix: str = "cmo:a2a:seen:") -> None:
        self._redis = client
        self._prefix = key_prefix

    async def add(self, message_id: str, ttl: float) -> bool:
        """See `SeenSet.add`."""
        added = await self._redis.set(f"{self._prefix}{message_id}", b"1", nx=True, px=max(int(ttl * 1000), 1))
        return bool(added)


class ReplayGuard:
    """Refuses an envelope whose `ts` is outside the window, or whose id was seen within it."""

    def __init__(self, seen: SeenSet | None = None, *, window: float = 300.0, skew: float = 30.0) -> None:
        self._seen = seen or MemorySeenSet()
        self.window = window
        self.skew = skew

    async def check(self, envelope: Envelope, *, now: datetime | None = None) -> None:
        """RejectedEnvelope `stale_message` (too old or from the future) or `replayed_message`."""
        self.check_time(envelope, now=now)
        await self.check_seen(envelope)

    def check_time(self, envelope: Envelope, *, now: datetime | None = None) -> None:
        """RejectedEnvelope `stale_message` unless `ts` is within the window (and the skew)."""
        sent = parse_rfc3339(envelope.meta.ts)
        if sent is None:  # Envelope.parse checked it: only a hand-made Meta gets here
            raise RejectedEnvelope("invalid_envelope", "$.meta.ts: must be date-time (format)")
        age = ((now or datetime.now(UTC)) - sent).total_seconds()
        if age > self.window:
            raise RejectedEnvelope("stale_message", f"sent {age:.0f} s ago, over the window of {self.window:g} s")
        if age < -self.skew:
            raise RejectedEnvelope(
                "stale_message", f"sent {-age:.0f} s in the future, over the skew of {self.skew:g} s"
            )

    async def check_seen(self, envelope: Envelope) -> None:
        """RejectedEnvelope `replayed_message` if its id was seen within the window; records it."""
        if not await self._seen.add(envelope.meta.message_id, self.window + self.skew):
            raise RejectedEnvelope("replayed_message", f"message {envelope.meta.message_id[:16]}… was seen already")
