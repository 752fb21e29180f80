"""The NATS JetStream transport (`cmo-sdk[nats]`): one stream for every topic, durable pull consumers.

A topic `qa.acme.web.x.y.z` is the subject `<subject_prefix>.qa.acme.web.x.y.z` of the stream
`stream` (file storage); a pattern is the same with NATS's own `*` and `>`. A publish carries
`Nats-Msg-Id` = the message id, so JetStream drops a duplicate within `duplicate_window`.

A group of the contract is a durable pull consumer on the pattern (explicit acks, `ack_wait`,
delivering what is published from its creation on). Past `max_deliveries` a message is
dead-lettered by the consumer that receives it once more (the server's `max_deliver` is one more,
so that delivery comes); should every one of those deliveries be lost, the server's MAX_DELIVERIES
advisory, heard by one live member of the group, dead-letters it. Dead letters go to the stream
`<stream>-deadletter`, de-duplicated by (consumer, stream sequence).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from cmo.a2a.topics import Topic, check_pattern
from cmo.a2a.transports._flow import Backpressure
from cmo.a2a.transports._protocol import Counters, DeadLetterRecord

__all__ = ["NatsTransport"]

CLOSE_WAIT = 5.0
"""Seconds `NatsTransport.close` waits for the connection to close."""
_FETCH_WAIT = 0.2
"""How long one fetch waits: the most a close waits for it."""


class NatsTransport:
    """Topics as subjects of one JetStream stream; see the module's docstring."""

    def __init__(
        self,
        client: Client,
        *,
        stream: str = "cmo-a2a",
        subject_prefix: str = "cmo.a2a",
        duplicate_window: float = 120.0,
    ) -> None:
        self.counters = Counters()
        self._nc = client
        self._js: JetStreamContext = client.jetstream()
        self._stream = stream
        self._dead_stream = f"{stream}-deadletter"
        self._prefix = subject_prefix
        self._duplicate_window = duplicate_window
        self._ready = False
        self._subscriptions: weakref.WeakSet[NatsSubscription] = weakref.WeakSet()

    @classmethod
    async def connect(cls, url: str, **options: Any) -> NatsTransport:
        """A transport on the NATS server at `url`, its streams made if missing."""
        transport = cls(await nats.connect(url), **options)
        await transport._ensure_streams()
        return transport

    async def _ensure_streams(self) -> None:
        if self._ready:
            return
        for name, subjects in (
            (self._stream, [f"{self._prefix}.>"]),
            (self._dead_stream, [f"{self._prefix}-deadletter.>"]),
        ):
            config = StreamConfig(
                name=name, subjects=subjects, storage=StorageType.FILE, duplicate_window=self._duplicate_window
            )
            try:
                await self._js.stream_info(name)
            except NotFoundError:
                await self._js.add_stream(config)
        self._ready = True

    def subject(self, topic_or_pattern: str) -> str:
        """The NATS subject of a topic (or the filter of a pattern)."""
        return f"{self._prefix}.{topic_or_pattern}"

    async def publish(self, topic: str, data: bytes, *, message_id: str) -> None:
        """Publish to the topic's subject and wait for JetStream's acknowledgement (stored)."""
        Topic.parse(topic)
        await self._js.publish(self.subject(topic), data, headers={"Nats-Msg-Id": message_id})
        self.counters.published += 1

    async def subscribe(
        self,
        pattern: str,
        *,
        group: str,
        consumer: str,
        max_deliveries: int = 5,
        ack_wait: float = 30.0,
        max_pending: int = 100,
    ) -> NatsSubscription:
        """A member of the durable consumer of `group` on `pattern`."""
        check_pattern(pattern)
        durable = _durable_name(group, pattern)
        config = ConsumerConfig(
            durable_name=durable,
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=max_deliveries + 1,
            filter_subject=self.subject(pattern),
            max_ack_pending=-1,
        )
        try:
            await self._js.consumer_info(self._stream, durable)
        except NotFoundError:
            await self._js.add_consumer(self._stream, config)
        pull = await self._js.pull_subscribe_bind(durable, self._stream)
        subscription = NatsSubscription(self, pull, group, durable, consumer, max_deliveries, ack_wait, max_pending)
        self._subscriptions.add(subscription)
        advisory = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self._stream}.{durable}"
        subscription._advisories = await self._nc.subscribe(advisory, queue=durable, cb=subscription._on_advisory)
        return subscription

    async def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        """The oldest dead letters still kept, up to `limit`."""
        info = await self._js.stream_info(self._dead_stream)
        records: list[DeadLetterRecord] = []
        if not info.state.messages:
            return records
        for seq in range(max(info.state.first_seq, 1), info.state.last_seq + 1):
            if len(records) >= limit:
                break
            with contextlib.suppress(NotFoundError):
                stored = await self._js.get_msg(self._dead_stream, seq)
                records.append(_record_from_json(stored.data or b"{}"))
        return records

    async def health(self) -> dict[str, Any]:
        """`ok` while connected with JetStream answering; the counters and what subscriptions hold."""
        try:
            await self._js.stream_info(self._stream)
            ok, detail = self._nc.is_connected, "jetstream answers"
        except Exception as err:  # the health of a dependency: any failure is an answer
            ok, detail = False, f"jetstream does not answer: {type(err).__name__}"
        pending = sum(s.pending for s in self._subscriptions)
        return {"ok": ok, "detail": detail, **self.counters.as_dict(), "pending": pending}

    async def close(self) -> None:
        """Close the connection (what is not acked comes again to its group after ack_wait).

        Bounded: a connection that lost its server flushes into nothing, and a shutdown waits for
        this close.
        """
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_WAIT):
                await self._nc.close()

    async def _dead_letter(self, record: DeadLetterRecord, *, seq: int, durable: str) -> None:
        """Store a dead letter; the same (consumer, sequence) twice is stored once."""
        body = json.dumps(
            {
                "topic": record.topic,
                "message_id": record.message_id,
                "data_base64": base64.b64encode(record.data).decode(),
                "reason": record.reason,
                "detail": record.detail,
                "deliveries": record.deliveries,
                "group": record.group,
            }
        ).encode()
        ack = await self._js.publish(
            f"{self._prefix}-deadletter.{durable}", body, headers={"Nats-Msg-Id": f"dl:{durable}:{seq}"}
        )
        if not ack.duplicate:
            self.counters.dead_lettered += 1


class NatsSubscription:
    """One member of a durable pull consumer."""

    def __init__(
        self,
        transport: NatsTransport,
        pull: JetStreamContext.PullSubscription,
        group: str,
        durable: str,
        consumer: str,
        max_deliveries: int,
        ack_wait: float,
        max_pending: int,
    ) -> None:
        self._transport = transport
        self._pull = pull
        self._ack_wait = ack_wait
        self._group = group
        self._durable = durable
        self.consumer = consumer
        self._max_deliveries = max_deliveries
        self._mine: dict[int, float] = {}  # stream sequence -> when it was handed out
        self._settled = asyncio.Event()
        self._flow = Backpressure(max_pending)
        self._closed = False
        self._advisories: Any = None

    @property
    def pending(self) -> int:
        return len(self._mine)

    def __aiter__(self) -> AsyncIterator[NatsDelivery]:
        return self._deliveries()

    async def close(self) -> None:
        """Stop fetching; what it holds unacked comes again to the group after ack_wait."""
        self._closed = True
        self._settled.set()
        if self._advisories is not None:
            with contextlib.suppress(Exception):
                await self._advisories.unsubscribe()

    async def _deliveries(self) -> AsyncIterator[NatsDelivery]:
        while not self._closed:
            if self._flow.held_back(self.pending):
                self._settled.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_FETCH_WAIT):
                        await self._settled.wait()
                continue
            try:
                messages = await self._pull.fetch(self._flow.room(self.pending), timeout=_FETCH_WAIT)
            except (NatsTimeout, TimeoutError):
                continue
            except nats.errors.ConnectionClosedError:
                # nats-py answers a fetch cancelled by a closing connection so: when this task is
                # being cancelled too, that is what it is (a shutdown, not a crash of the consumer).
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from None
                raise
            for msg in messages:
                metadata = msg.metadata
                seq, deliveries = metadata.sequence.stream, metadata.num_delivered
                if deliveries > self._max_deliveries:
                    await self._transport._dead_letter(
                        self._record(msg, "max_deliveries", f"not acked in {self._max_deliveries} deliveries",
                                     deliveries - 1),
                        seq=seq, durable=self._durable,
                    )  # fmt: skip
                    await msg.term()
                    continue
                self._mine[seq] = time.monotonic()
                counters = self._transport.counters
                counters.delivered += 1
                counters.redelivered += deliveries > 1
                yield NatsDelivery(self, msg, seq, deliveries)

    def _record(self, msg: Msg, reason: str, detail: str, deliveries: int) -> DeadLetterRecord:
        return DeadLetterRecord(
            topic=msg.subject.removeprefix(f"{self._transport._prefix}."),
            message_id=(msg.headers or {}).get("Nats-Msg-Id", ""),
            data=msg.data,
            reason=reason,
            detail=detail,
            deliveries=deliveries,
            group=self._group,
        )

    async def _on_advisory(self, advisory: Msg) -> None:
        """The server gave up on a message (every delivery of it was lost): dead-letter it."""
        event = json.loads(advisory.data)
        seq = int(event["stream_seq"])
        stored = await self._transport._js.get_msg(self._transport._stream, seq)
        record = DeadLetterRecord(
            topic=(stored.subject or "").removeprefix(f"{self._transport._prefix}."),
            message_id=(stored.headers or {}).get("Nats-Msg-Id", ""),
            data=stored.data or b"",
            reason="max_deliveries",
            detail=f"not acked in {int(event['deliveries'])} deliveries",
            deliveries=int(event["deliveries"]),
            group=self._group,
        )
        await self._transport._dead_letter(record, seq=seq, durable=self._durable)

    def _settle(self, seq: int) -> bool:
        """Whether this subscription may still settle the delivery: not past its ack_wait.

        Past it, the server hands the message to another consumer: an ack then would be a second
        consumer's word on one delivery, so it is not sent (as the other transports refuse it).
        """
        handed_out = self._mine.pop(seq, None)
        if handed_out is None:
            return False
        self._settled.set()
        return time.monotonic() - handed_out < self._ack_wait


@dataclass(frozen=True, slots=True)
class NatsDelivery:
    _subscription: NatsSubscription
    _msg: Msg
    _seq: int
    deliveries: int

    @property
    def topic(self) -> str:
        return self._msg.subject.removeprefix(f"{self._subscription._transport._prefix}.")

    @property
    def data(self) -> bytes:
        return self._msg.data

    @property
    def message_id(self) -> str:
        return (self._msg.headers or {}).get("Nats-Msg-Id", "")

    async def ack(self) -> None:
        sub = self._subscription
        if sub._settle(self._seq):
            # A double ack waits for the server's word: the message is settled when this returns.
            await self._msg.ack_sync()
            sub._transport.counters.acked += 1

    async def nak(self, delay: float = 0.0) -> None:
        if self._subscription._settle(self._seq):
            await self._msg.nak(delay=delay if delay > 0 else None)

    async def term(self, reason: str, detail: str = "") -> None:
        sub = self._subscription
        if sub._settle(self._seq):
            record = sub._record(self._msg, reason, detail, self.deliveries)
            await sub._transport._dead_letter(record, seq=self._seq, durable=sub._durable)
            await self._msg.term()


def _durable_name(group: str, pattern: str) -> str:
    """A durable consumer name (letters, digits, - and _) for a group on a pattern."""
    readable = re.sub(r"[^A-Za-z0-9_-]", "_", group)[:64]
    return f"{readable}-{hashlib.sha256(pattern.encode()).hexdigest()[:12]}"


def _record_from_json(body: bytes) -> DeadLetterRecord:
    data = json.loads(body)
    return DeadLetterRecord(
        topic=data["topic"],
        message_id=data["message_id"],
        data=base64.b64decode(data["data_base64"]),
        reason=data["reason"],
        detail=data["detail"],
        deliveries=int(data["deliveries"]),
        group=data["group"],
    )
