"""The A2A wire gates with the project's policies, on Redis Streams: a message a policy refuses on
receipt is dead-lettered as `denied_by_policy` with the policy, rule and reason (never dropped,
never handled); one it refuses on sending is never published."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from cmo.a2a import AgentId, Envelope, HmacKeys, MemoryEvent, Payload, TaskRequest, Topic
from cmo.a2a.errors import RejectedEnvelope
from cmo.a2a.pipeline import Inbound, Outbound
from cmo.a2a.tokens import JwtKey, TokenVerifier
from cmo.a2a.transports import Transport
from cmo.policy import PolicyBundle, WireGatePolicy
from tests.support.waiting import assert_eventually

pytestmark = pytest.mark.redis

POLICIES = Path(__file__).resolve().parents[2] / "policies"
MEMORY = AgentId("agent", "memory", "1.0")
HEALER = AgentId("specialist", "healer", "1.0")
INBOX = str(Topic.specialist_invoke("acme", "web", "memory"))
SECRET = b"k" * 32
TOKEN_SECRET = b"t" * 32
TOKENS = TokenVerifier.of([JwtKey("t1", "HS256", TOKEN_SECRET)])


def capability(*capabilities: str) -> str:
    claims = {"sub": HEALER.id, "aud": MEMORY.id, "exp": int(time.time()) + 300, "capabilities": list(capabilities)}
    return jwt.encode(claims, TOKEN_SECRET, "HS256", headers={"kid": "t1"})


def write(key: str, *, capabilities: tuple[str, ...] = ("memory.write",)) -> Envelope:
    return Envelope.build(
        MemoryEvent("put", key, {"selector": "#buy"}),
        sender=HEALER,
        to=MEMORY,
        tenant="acme",
        project="web",
        capability_token=capability(*capabilities),
    )


@pytest.fixture
async def transport(redis_server: str) -> AsyncIterator[Transport]:
    from cmo.a2a.transports.redis import RedisTransport

    redis = RedisTransport.from_url(redis_server, key_prefix=f"test-{uuid.uuid4().hex[:8]}:")
    try:
        yield redis
    finally:
        await redis.close()


async def test_a_message_the_policies_refuse_on_receipt_is_dead_lettered_with_why(transport: Transport):
    gate = WireGatePolicy(PolicyBundle.load(POLICIES), tokens=TOKENS)
    keys = HmacKeys({"k1": SECRET}, current="k1")
    inbound = Inbound(me=MEMORY, tenant="acme", project="web", keys=keys, tokens=TOKENS, gate=gate, retry_delay=0.05)
    handled: list[str] = []

    async def store(envelope: Envelope) -> Payload | None:
        handled.append(envelope.payload["key"])
        return None

    subscription = await transport.subscribe(INBOX, group="memory", consumer="m1", max_deliveries=3)
    serving = asyncio.create_task(inbound.serve(subscription, store))
    sender = Outbound(transport, keys=keys)
    try:
        await sender.send(write("healing/selectors/checkout"), INBOX)
        await sender.send(write("runs/42"), INBOX)  # the healer writes only under healing/*
        await sender.send(write("healing/selectors/cart", capabilities=("memory.read",)), INBOX)

        async def both_dead() -> list[Any] | None:
            letters = await transport.dead_letters()
            return letters if len(letters) == 2 else None

        dead = await assert_eventually(both_dead, what="both refusals dead-lettered")
        await assert_eventually(lambda: handled, what="the allowed write handled")
    finally:
        serving.cancel()
    assert handled == ["healing/selectors/checkout"]
    assert [d.reason for d in dead] == ["denied_by_policy", "denied_by_policy"]
    assert dead[0].detail == "policy slices, rule write_scope: healer may write only under healing/*, not runs/42"
    assert dead[1].detail == (
        "policy a2a, rule missing_capability: "
        "a MemoryEvent needs the capability memory.write, which healer does not hold"
    )
    assert inbound.rejected == {"denied_by_policy": 2}


async def test_a_message_the_policies_refuse_on_sending_is_never_published(transport: Transport):
    gate = WireGatePolicy(PolicyBundle.load(POLICIES))
    sender = Outbound(transport, gate=gate)
    other_inbox = str(Topic.specialist_invoke("globex", "web", "memory"))
    seen: list[Any] = []
    subscription = await transport.subscribe(other_inbox, group="g", consumer="c")

    async def read() -> None:
        async for delivery in subscription:
            seen.append(delivery.data)
            await delivery.ack()

    reader = asyncio.create_task(read())
    envelope = Envelope.build(TaskRequest("t", {}), sender=HEALER, to=MEMORY, tenant="acme", project="web")
    with pytest.raises(RejectedEnvelope) as refused:
        await sender.send(envelope, other_inbox)
    assert refused.value.reason == "denied_by_policy"
    assert refused.value.detail == "policy a2a, rule cross_tenant: a message of acme/web on a topic of globex/web"
    await asyncio.sleep(0.3)
    reader.cancel()
    assert seen == []
