"""The Redis Streams transport (`cmo-sdk[redis]`): one stream per topic, consumer groups, XAUTOCLAIM.

Layout under `key_prefix` (default `cmo:a2a:`): `stream:<topic>` is the topic's stream (XADD with
an approximate MAXLEN of `retain`), `topics` the set of topics published to (how a wildcard
subscription finds its streams), `groups` when each group was made (so a group that finds a new
stream reads it from the group's creation on), `deadletter` the dead-letter stream.

A group of the contract is the Redis group `<group>@<pattern>` on every stream the pattern
matches. A delivery not acked within `ack_wait` is claimed by a live consumer of the group
(XAUTOCLAIM, which counts the delivery); past `max_deliveries` it is dead-lettered instead. A nak
makes the entry claimable after its delay (XCLAIM ... IDLE, JUSTID).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
import weakref
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from cmo.a2a.topics import Topic, check_pattern, matches
from cmo.a2a.transports._flow import Backpressure
from cmo.a2a.transports._protocol import Counters, DeadLetterRecord

__all__ = ["RedisTransport", "TransportFull"]

_BLOCK_MS = 200
"""How long one XREADGROUP waits: the most a close, a new stream or a reclaim waits for it."""
_DISCOVER_EVERY = 0.5
_BACKLOG_CHECK_EVERY = 0.1
_MAX_SEQ = 2**64 - 1


class TransportFull(Exception):
    """A publish found its stream's backlog at the limit for longer than `publish_timeout`."""


class RedisTransport:
    """Topics as Redis streams; see the module's docstring."""

    def __init__(
        self,
        client: Redis,
        *,
        key_prefix: str = "cmo:a2a:",
        retain: int = 100_000,
        max_backlog: int = 10_000,
        publish_timeout: float = 10.0,
    ) -> None:
        """Wrap a redis-py asyncio client (`decode_responses=False`).

        Args:
            client: The connection pool to use.
            key_prefix: Prefix of every key, so several deployments can share a Redis.
            retain: Approximate length a stream is trimmed to.
            max_backlog: A publish waits while a group of its stream has this many messages not
                yet acked (delivered or not), and fails with TransportFull after
                `publish_timeout` seconds (0: at once).
            publish_timeout: See `max_backlog`.
        """
        self.counters = Counters()
        self._redis = client
        self._prefix = key_prefix
        self._retain = retain
        self._max_backlog = max_backlog
        self._publish_timeout = publish_timeout
        self._backlog_checked: dict[str, float] = {}
        self._subscriptions: weakref.WeakSet[RedisSubscription] = weakref.WeakSet()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisTransport:
        """A transport on the Redis at `url` (`redis://host:port/db`)."""
        return cls(Redis.from_url(url, decode_responses=False), **options)

    def stream_key(self, topic: str) -> str:
        """The key of the topic's stream."""
        return f"{self._prefix}stream:{topic}"

    async def publish(self, topic: str, data: bytes, *, message_id: str) -> None:
        """XADD to the topic's stream (after waiting out a full backlog), and note the topic."""
        Topic.parse(topic)
        key = self.stream_key(topic)
        await self._wait_for_room(key)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(key, {"id": message_id, "data": data}, maxlen=self._retain, approximate=True)
            pipe.sadd(f"{self._prefix}topics", topic)
            await pipe.execute()
        self.counters.published += 1

    async def _wait_for_room(self, key: str) -> None:
        now = time.monotonic()
        if now - self._backlog_checked.get(key, 0.0) < _BACKLOG_CHECK_EVERY:
            return
        give_up = now + self._publish_timeout
        while (backlog := await self._backlog(key)) >= self._max_backlog:
            if time.monotonic() >= give_up:
                raise TransportFull(
                    f"{key}: {backlog} messages are not acked yet (the limit is {self._max_backlog}); "
                    "a consumer is behind or gone"
                )
            await asyncio.sleep(0.05)
        self._backlog_checked[key] = time.monotonic()

    async def _backlog(self, key: str) -> int:
        """The most messages a group of the stream has not acked: its lag plus its pending."""
        try:
            groups = await self._redis.xinfo_groups(key)
        except ResponseError:  # no such stream yet
            return 0
        return max((int(g.get("lag") or 0) + int(g["pending"]) for g in groups), default=0)

    async def subscribe(
        self,
        pattern: str,
        *,
        group: str,
        consumer: str,
        max_deliveries: int = 5,
        ack_wait: float = 30.0,
        max_pending: int = 100,
    ) -> RedisSubscription:
        """A consumer of `group` on the streams of the topics `pattern` matches."""
        check_pattern(pattern)
        name = f"{group}@{pattern}"
        seconds, micros = await self._redis.time()
        created = (seconds * 1000 + micros // 1000) - 1
        groups = f"{self._prefix}groups"
        # redis-py types hash and set commands for both its clients: the asyncio one returns awaitables.
        await cast("Awaitable[int]", self._redis.hsetnx(groups, name, f"{created}-{_MAX_SEQ}"))
        start = await cast("Awaitable[bytes | None]", self._redis.hget(groups, name))
        assert start is not None
        subscription = RedisSubscription(
            self, pattern, name, group, consumer, start.decode(), max_deliveries, ack_wait, max_pending
        )
        self._subscriptions.add(subscription)
        return subscription

    async def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        """The oldest entries of the dead-letter stream, up to `limit`."""
        entries = await self._redis.xrange(f"{self._prefix}deadletter", count=limit)
        return [_dead_letter_record(fields) for _, fields in entries]

    async def health(self) -> dict[str, Any]:
        """`ok` if Redis answers PING; the counters and what this process's subscriptions hold."""
        try:
            ok, detail = bool(await cast("Awaitable[bool]", self._redis.ping())), "redis answers"
        except Exception as err:  # the health of a dependency: any failure is an answer
            ok, detail = False, f"redis does not answer: {type(err).__name__}"
        pending = sum(s.pending for s in self._subscriptions)
        return {"ok": ok, "detail": detail, **self.counters.as_dict(), "pending": pending}

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()

    async def _dead_letter(
        self, key: str, redis_group: str, group: str, entry_id: bytes, fields: dict[bytes, bytes], reason: str,
        detail: str, deliveries: int,
    ) -> None:  # fmt: skip
        """Move one entry to the dead-letter stream and ack it, in one transaction."""
        record = {
            "topic": key.removeprefix(f"{self._prefix}stream:"),
            "message_id": fields.get(b"id", b""),
            "data": fields.get(b"data", b""),
            "reason": reason,
            "detail": detail,
            "deliveries": str(deliveries),
            "group": group,
            "entry_id": entry_id,
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(f"{self._prefix}deadletter", record)  # type: ignore[arg-type]
            pipe.xack(key, redis_group, entry_id)
            await pipe.execute()
        self.counters.dead_lettered += 1


class RedisSubscription:
    """One consumer of a group: XREADGROUP for new entries, XAUTOCLAIM for abandoned ones."""

    def __init__(
        self,
        transport: RedisTransport,
        pattern: str,
        redis_group: str,
        group: str,
        consumer: str,
        start_id: str,
        max_deliveries: int,
        ack_wait: float,
        max_pending: int,
    ) -> None:
        self._transport = transport
        self._redis = transport._redis
        self._pattern = pattern
        self._redis_group = redis_group
        self._group = group
        self._consumer = consumer
        self._start_id = start_id
        self._max_deliveries = max_deliveries
        self._ack_wait_ms = max(int(ack_wait * 1000), 1)
        self._streams: set[str] = set()
        self._discovered_at = 0.0
        self._reclaimed_at = 0.0
        self._mine: dict[tuple[str, bytes], float] = {}  # (stream, entry) -> when it was handed out
        self._settled = asyncio.Event()
        self._acks: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self._acking: asyncio.Task[None] | None = None
        self._flow = Backpressure(max_pending)
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._mine)

    def __aiter__(self) -> AsyncIterator[RedisDelivery]:
        return self._deliveries()

    async def close(self) -> None:
        """Stop reading; deliveries not acked come again to the group after `ack_wait`."""
        self._closed = True
        self._settled.set()

    async def _deliveries(self) -> AsyncIterator[RedisDelivery]:
        while not self._closed:
            await self._discover()
            if self._flow.held_back(self.pending):
                self._settled.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_BLOCK_MS / 1000):
                        await self._settled.wait()
                continue
            room = self._flow.room(self.pending)
            for delivery in await self._reclaim(room):
                yield delivery
                room -= 1
            if room <= 0 or not self._streams:
                if not self._streams:
                    await asyncio.sleep(_BLOCK_MS / 1000)
                continue
            streams: dict[Any, Any] = {key: ">" for key in sorted(self._streams)}
            batches = await self._redis.xreadgroup(
                self._redis_group, self._consumer, streams, count=room, block=_BLOCK_MS
            )
            for key, entries in batches or []:
                for entry_id, fields in entries:
                    yield self._deliver(key.decode(), entry_id, fields, 1)

    async def _discover(self) -> None:
        """Find the streams of topics the pattern matches; make the group on each new one."""
        if time.monotonic() - self._discovered_at < _DISCOVER_EVERY:
            return
        self._discovered_at = time.monotonic()
        topics = await cast("Awaitable[set[bytes]]", self._redis.smembers(f"{self._transport._prefix}topics"))
        for raw in topics:
            topic = raw.decode()
            key = self._transport.stream_key(topic)
            if key in self._streams or not matches(self._pattern, topic):
                continue
            try:
                await self._redis.xgroup_create(key, self._redis_group, id=self._start_id, mkstream=True)
            except ResponseError as err:
                if "BUSYGROUP" not in str(err):
                    raise
            self._streams.add(key)

    async def _reclaim(self, room: int) -> list[RedisDelivery]:
        """Claim entries idle past ack_wait (their consumer died or nak'ed them); dead-letter the worn out."""
        if room <= 0 or time.monotonic() - self._reclaimed_at < min(self._ack_wait_ms / 2000, 1.0):
            return []
        self._reclaimed_at = time.monotonic()
        claimed: list[RedisDelivery] = []
        for key in sorted(self._streams):
            _, entries, deleted = await self._redis.xautoclaim(
                key, self._redis_group, self._consumer, self._ack_wait_ms, start_id="0-0", count=room
            )
            for entry_id in deleted:  # trimmed away while pending: say so, never drop it silently
                await self._transport._dead_letter(
                    key, self._redis_group, self._group, entry_id, {}, "trimmed", "the stream was trimmed past it", 0
                )
            for entry_id, fields in entries:
                deliveries = await self._times_delivered(key, entry_id)
                if deliveries > self._max_deliveries:
                    await self._transport._dead_letter(
                        key, self._redis_group, self._group, entry_id, fields, "max_deliveries",
                        f"not acked in {self._max_deliveries} deliveries", deliveries - 1,
                    )  # fmt: skip
                    continue
                claimed.append(self._deliver(key, entry_id, fields, deliveries))
            room -= len(entries)
            if room <= 0:
                break
        return claimed

    async def _times_delivered(self, key: str, entry_id: bytes) -> int:
        found = await self._redis.xpending_range(key, self._redis_group, min=entry_id, max=entry_id, count=1)
        return int(found[0]["times_delivered"]) if found else 1

    def _deliver(self, key: str, entry_id: bytes, fields: dict[bytes, bytes], deliveries: int) -> RedisDelivery:
        self._mine[key, entry_id] = time.monotonic()
        counters = self._transport.counters
        counters.delivered += 1
        counters.redelivered += deliveries > 1
        return RedisDelivery(self, key, entry_id, fields, deliveries)

    async def _ack(self, key: str, entry_id: bytes) -> None:
        """XACK, returning once it is done; acks made meanwhile share one round trip (group commit)."""
        done = asyncio.get_running_loop().create_future()
        self._acks.append((key, entry_id, done))
        if self._acking is None or self._acking.done():
            self._acking = asyncio.create_task(self._flush_acks())
        await done

    async def _flush_acks(self) -> None:
        while self._acks:
            batch, self._acks = self._acks, []
            by_stream: dict[str, list[bytes]] = collections.defaultdict(list)
            for key, entry_id, _ in batch:
                by_stream[key].append(entry_id)
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key, ids in by_stream.items():
                        pipe.xack(key, self._redis_group, *ids)
                    acked = await pipe.execute()
            except Exception as err:
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(err)
                continue
            # An entry another consumer claimed and acked meanwhile counts 0: this ack changed nothing.
            self._transport.counters.acked += sum(int(n) for n in acked)
            for _, _, done in batch:
                if not done.done():
                    done.set_result(None)

    def _settle(self, key: str, entry_id: bytes) -> bool:
        """Whether this subscription may still settle the delivery: not past its ack_wait.

        Past it, another consumer may have claimed the entry, and XACK does not tell whose it is.
        """
        handed_out = self._mine.pop((key, entry_id), None)
        if handed_out is None:
            return False
        self._settled.set()
        return time.monotonic() - handed_out < self._ack_wait_ms / 1000


@dataclass(frozen=True, slots=True)
class RedisDelivery:
    _subscription: RedisSubscription
    _key: str
    _entry_id: bytes
    _fields: dict[bytes, bytes]
    deliveries: int

    @property
    def topic(self) -> str:
        return self._key.removeprefix(f"{self._subscription._transport._prefix}stream:")

    @property
    def data(self) -> bytes:
        return self._fields.get(b"data", b"")

    @property
    def message_id(self) -> str:
        return self._fields.get(b"id", b"").decode()

    async def ack(self) -> None:
        sub = self._subscription
        if sub._settle(self._key, self._entry_id):
            await sub._ack(self._key, self._entry_id)

    async def nak(self, delay: float = 0.0) -> None:
        sub = self._subscription
        if not sub._settle(self._key, self._entry_id):
            return
        # Idle as if it had waited ack_wait - delay already: the next reclaim after `delay` takes it.
        idle = max(sub._ack_wait_ms - int(delay * 1000), 0)
        await sub._redis.xclaim(self._key, sub._redis_group, sub._consumer, 0, [self._entry_id], idle=idle, justid=True)
        sub._reclaimed_at = 0.0

    async def term(self, reason: str, detail: str = "") -> None:
        sub = self._subscription
        if sub._settle(self._key, self._entry_id):
            await sub._transport._dead_letter(
                self._key, sub._redis_group, sub._group, self._entry_id, self._fields, reason, detail, self.deliveries
            )


def _dead_letter_record(fields: dict[bytes, bytes]) -> DeadLetterRecord:
    return DeadLetterRecord(
        topic=fields[b"topic"].decode(),
        message_id=fields[b"message_id"].decode(),
        data=fields[b"data"],
        reason=fields[b"reason"].decode(),
        detail=fields[b"detail"].decode(),
        deliveries=int(fields[b"deliveries"]),
        group=fields[b"group"].decode(),
    )
