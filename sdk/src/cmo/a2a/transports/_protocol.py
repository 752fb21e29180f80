"""The one interface every transport implements (in memory, Redis Streams, NATS JetStream).

The contract, which tests/unit/a2a/transport_contract.py checks on each:

- `publish(topic, data, message_id=...)` appends a message to the topic.
- `subscribe(pattern, group=..., consumer=...)` reads the topics `pattern` matches (`*` one
  token, `>` the rest) as a member of a consumer group: each message goes to one consumer of each
  group; the group is durable, so a consumer that joins later resumes where the group is. A group
  sees what is published from its creation on.
- Every delivery is acked, nak'ed (redelivered after a delay) or terminated (dead-lettered at once
  with a reason). One neither acked nor nak'ed within `ack_wait` seconds (its consumer died) is
  redelivered to a consumer of the group; after `max_deliveries` deliveries it is dead-lettered
  with the reason `max_deliveries`, its original id and topic kept. Nothing is dropped silently.
- A subscription holds at most `max_pending` unacked deliveries: it stops reading there and reads
  again once they are down to 80% of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Counters", "DeadLetterRecord", "Delivery", "Subscription", "Transport"]


@dataclass(slots=True)
class Counters:
    """What a transport has done, since it was opened, in this process."""

    published: int = 0
    delivered: int = 0
    acked: int = 0
    redelivered: int = 0
    dead_lettered: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "published": self.published,
            "delivered": self.delivered,
            "acked": self.acked,
            "redelivered": self.redelivered,
            "dead_lettered": self.dead_lettered,
        }


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A message that was not handled, and why."""

    topic: str
    message_id: str
    data: bytes
    reason: str
    detail: str
    deliveries: int
    """How many times it was delivered to a consumer before it was dead-lettered."""
    group: str = ""


class Delivery(Protocol):
    """One delivery of a message to a consumer."""

    @property
    def topic(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def message_id(self) -> str: ...
    @property
    def deliveries(self) -> int:
        """1 the first time, + 1 on each redelivery."""

    async def ack(self) -> None:
        """Handled: never delivered to this group again."""

    async def nak(self, delay: float = 0.0) -> None:
        """Not handled now: deliver it again after `delay` seconds (counts as a delivery)."""

    async def term(self, reason: str, detail: str = "") -> None:
        """Never to be handled: dead-letter it now with `reason` (a code, `bad_signature`)."""


class Subscription(Protocol):
    """A consumer's stream of deliveries; iterate it, close it when done."""

    def __aiter__(self) -> AsyncIterator[Delivery]: ...
    @property
    def pending(self) -> int:
        """Deliveries handed out and not yet acked, nak'ed or terminated."""

    async def close(self) -> None: ...


class Transport(Protocol):
    """Publishes and delivers envelopes' bytes on topics."""

    counters: Counters

    async def publish(self, topic: str, data: bytes, *, message_id: str) -> None: ...

    async def subscribe(
        self,
        pattern: str,
        *,
        group: str,
        consumer: str,
        max_deliveries: int = 5,
        ack_wait: float = 30.0,
        max_pending: int = 100,
    ) -> Subscription: ...

    async def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        """The oldest dead letters still kept, up to `limit`."""

    async def health(self) -> dict[str, Any]:
        """Whether the server answers (`ok`, `detail`), the counters, and `pending`.

        `pending` counts the deliveries this process's subscriptions hold unsettled.
        """

    async def close(self) -> None: ...
