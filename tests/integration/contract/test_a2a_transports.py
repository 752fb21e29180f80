"""The transport contract (cmo/a2a/transports/_protocol.py), on every transport: in memory, Redis
Streams on a real Redis server, NATS JetStream on a real nats-server (fsync before every ack).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cmo.a2a.transports import Delivery, MemoryTransport, Subscription, Transport
from tests.support.waiting import assert_eventually

TOPIC = "qa.acme.web.specialists.healer.invoke"
OTHER = "qa.acme.web.specialists.scout.invoke"


@pytest.fixture(
    params=["memory", pytest.param("redis", marks=pytest.mark.redis), pytest.param("nats", marks=pytest.mark.nats)]
)
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    opened: Transport
    if request.param == "memory":
        opened = MemoryTransport()
    elif request.param == "nats":
        from cmo.a2a.transports.nats import NatsTransport

        tag = uuid.uuid4().hex[:8]
        url = request.getfixturevalue("nats_server")
        opened = await NatsTransport.connect(url, stream=f"TEST_{tag}", subject_prefix=f"test{tag}")
    else:
        from cmo.a2a.transports.redis import RedisTransport

        url = request.getfixturevalue("redis_server")
        opened = RedisTransport.from_url(url, key_prefix=f"test-{uuid.uuid4().hex[:8]}:")
    try:
        yield opened
    finally:
        await opened.close()


async def take(subscription: Subscription, n: int, *, timeout: float = 5.0) -> list[Delivery]:
    """The next `n` deliveries (TimeoutError if they do not come)."""
    got: list[Delivery] = []

    async def read() -> None:
        async for delivery in subscription:
            got.append(delivery)
            if len(got) == n:
                return

    await asyncio.wait_for(read(), timeout)
    return got


async def nothing_more(subscription: Subscription, wait: float = 0.3) -> None:
    with contextlib.suppress(TimeoutError):
        got = await take(subscription, 1, timeout=wait)
        raise AssertionError(f"unexpected delivery {got[0].message_id}")


async def publish(transport: Transport, n: int, topic: str = TOPIC, prefix: str = "m") -> list[str]:
    ids = [f"{prefix}{i}" for i in range(n)]
    for message_id in ids:
        await transport.publish(topic, message_id.encode(), message_id=message_id)
    return ids


async def test_each_group_gets_every_message_and_a_wildcard_only_what_it_matches(transport: Transport):
    first = await transport.subscribe(TOPIC, group="a", consumer="a1")
    second = await transport.subscribe("qa.acme.web.specialists.*.invoke", group="b", consumer="b1")
    narrow = await transport.subscribe("qa.acme.web.specialists.scout.>", group="c", consumer="c1")
    await publish(transport, 1)
    await publish(transport, 1, topic=OTHER, prefix="o")
    [one] = await take(first, 1)
    assert (one.topic, one.data, one.message_id, one.deliveries) == (TOPIC, b"m0", "m0", 1)
    assert sorted(d.message_id for d in await take(second, 2)) == ["m0", "o0"]
    assert [d.message_id for d in await take(narrow, 1)] == ["o0"]
    await nothing_more(first)


async def test_the_consumers_of_a_group_share_its_messages_each_once(transport: Transport):
    one = await transport.subscribe(TOPIC, group="g", consumer="c1", max_pending=5)
    two = await transport.subscribe(TOPIC, group="g", consumer="c2", max_pending=5)
    ids = await publish(transport, 40)
    seen: list[tuple[str, str]] = []

    async def consume(subscription: Subscription, name: str) -> None:
        async for delivery in subscription:
            seen.append((name, delivery.message_id))
            await delivery.ack()
            await asyncio.sleep(0.001)

    tasks = [asyncio.create_task(consume(one, "c1")), asyncio.create_task(consume(two, "c2"))]
    await assert_eventually(lambda: len(seen) >= len(ids), what="every message handled")
    await asyncio.sleep(0.2)  # and nothing more comes
    for task in tasks:
        task.cancel()
    assert sorted(m for _, m in seen) == sorted(ids), "a message was lost or handled twice"
    assert {name for name, _ in seen} == {"c1", "c2"}, "one consumer took everything"
    assert transport.counters.acked == 40


async def test_a_nak_redelivers_and_a_poison_message_is_dead_lettered_while_the_rest_flow(transport: Transport):
    sub = await transport.subscribe(TOPIC, group="g", consumer="c", max_deliveries=3)
    await publish(transport, 1, prefix="poison")
    await publish(transport, 3, prefix="ok")
    handled: list[str] = []
    deliveries_of_poison: list[int] = []

    async def consume() -> None:
        async for delivery in sub:
            if delivery.message_id == "poison0":
                deliveries_of_poison.append(delivery.deliveries)
                await delivery.nak()
            else:
                handled.append(delivery.message_id)
                await delivery.ack()

    task = asyncio.create_task(consume())
    [dead] = await assert_eventually(transport.dead_letters, what="the poison message dead-lettered")
    task.cancel()
    assert handled == ["ok0", "ok1", "ok2"]
    assert deliveries_of_poison == [1, 2, 3]
    assert (dead.message_id, dead.topic, dead.reason, dead.deliveries, dead.data) == (
        "poison0",
        TOPIC,
        "max_deliveries",
        3,
        b"poison0",
    )
    assert transport.counters.dead_lettered == 1
    assert transport.counters.redelivered == 2


async def test_a_terminated_message_is_dead_lettered_at_once_with_its_reason(transport: Transport):
    sub = await transport.subscribe(TOPIC, group="g", consumer="c")
    await publish(transport, 1)
    [delivery] = await take(sub, 1)
    await delivery.term("bad_signature", "no key k9")
    [dead] = await transport.dead_letters()
    assert (dead.reason, dead.detail, dead.message_id, dead.group) == ("bad_signature", "no key k9", "m0", "g")
    await nothing_more(sub)


async def test_a_delivery_its_consumer_never_answers_goes_to_another_after_ack_wait(transport: Transport):
    dying = await transport.subscribe(TOPIC, group="g", consumer="dying", ack_wait=0.2)
    await publish(transport, 1)
    [lost] = await take(dying, 1)
    await dying.close()  # gone without an ack: as after kill -9
    survivor = await transport.subscribe(TOPIC, group="g", consumer="survivor", ack_wait=0.2)
    [again] = await take(survivor, 1, timeout=3)
    assert (again.message_id, again.deliveries) == (lost.message_id, 2)
    await again.ack()
    await lost.ack()  # too late: it is not the dying consumer's any more, and counts nothing
    assert transport.counters.acked == 1
    await nothing_more(survivor, wait=0.5)


async def test_a_consumer_pauses_at_its_maximum_of_pending_and_resumes_at_80_percent(transport: Transport):
    sub = await transport.subscribe(TOPIC, group="g", consumer="c", max_pending=10)
    ids = await publish(transport, 30)
    got = await take(sub, 10)
    assert sub.pending == 10
    await nothing_more(sub)  # paused at 10
    for delivery in got[:1]:
        await delivery.ack()
    await nothing_more(sub)  # 9 pending: still paused until 8
    await got[1].ack()
    more = await take(sub, 2)  # resumed at 8: up to the maximum again
    assert sub.pending == 10
    received: list[Any] = [*got, *more]
    for delivery in received[2:]:
        await delivery.ack()
    rest: list[Delivery] = []

    async def drain() -> None:
        async for delivery in sub:
            rest.append(delivery)
            await delivery.ack()
            if len(rest) == 18:
                return

    await asyncio.wait_for(drain(), 5)
    assert sorted(d.message_id for d in [*received, *rest]) == sorted(ids), "backpressure lost a message"


@pytest.mark.nats
async def test_nats_drops_a_republished_message_id_within_its_duplicate_window(nats_server: str):
    from cmo.a2a.transports.nats import NatsTransport

    tag = uuid.uuid4().hex[:8]
    transport = await NatsTransport.connect(nats_server, stream=f"TEST_{tag}", subject_prefix=f"test{tag}")
    try:
        sub = await transport.subscribe(TOPIC, group="g", consumer="c")
        for _ in range(3):  # a retried step publishing its message again
            await transport.publish(TOPIC, b"once", message_id="same-id")
        await publish(transport, 1, prefix="other")
        got = await take(sub, 2)
        assert [d.message_id for d in got] == ["same-id", "other0"]
        await nothing_more(sub)
    finally:
        await transport.close()


async def test_health_reports_the_counters_and_what_is_pending(transport: Transport):
    sub = await transport.subscribe(TOPIC, group="g", consumer="c")
    await publish(transport, 2)
    first, second = await take(sub, 2)
    health = await transport.health()
    assert health["ok"] is True
    assert (health["published"], health["delivered"], health["pending"]) == (2, 2, 2)
    await first.ack()
    await second.term("bad_signature")
    health = await transport.health()
    assert (health["acked"], health["dead_lettered"], health["pending"]) == (1, 1, 0)
