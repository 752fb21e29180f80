"""The receive pipeline end to end on a transport: forgeries dead-lettered with their reasons,
duplicates answered once, failing handlers retried then dead-lettered."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cmo.a2a import (
    AgentId,
    Budget,
    Cost,
    Envelope,
    HmacKeys,
    Payload,
    SpecialistInvocationRequest,
    SpecialistResult,
    Topic,
    message_id,
)
from cmo.a2a.pipeline import IdempotencyStore, Inbound, MemoryIdempotency, Outbound, RedisIdempotency
from cmo.a2a.replay import MemorySeenSet, RedisSeenSet, ReplayGuard, SeenSet
from cmo.a2a.tokens import JwtKey, TokenVerifier
from cmo.a2a.transports import MemoryTransport, Transport
from tests.support.waiting import assert_eventually

ORCHESTRATOR = AgentId("orchestrator", "triage", "1.0")
HEALER = AgentId("specialist", "healer", "1.0")
INVOKE = str(Topic.specialist_invoke("acme", "web", "healer"))
REPLIES = str(Topic.replies("acme", "web", "triage"))
SECRET = b"k" * 32
TOKEN_SECRET = b"t" * 32
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PEM = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
TOKENS = TokenVerifier.of([JwtKey("t1", "HS256", TOKEN_SECRET), JwtKey("r1", "RS256", RSA_KEY.public_key())])


def a_token(**changes: Any) -> str:
    now = int(time.time())
    claims = {"sub": ORCHESTRATOR.id, "exp": now + 300, "scope": "specialists.invoke", **changes}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, TOKEN_SECRET, "HS256", headers={"kid": "t1"})


def a_capability(*capabilities: str, **changes: Any) -> str:
    return a_token(aud=HEALER.id, capabilities=list(capabilities), **changes)


def request(**meta: Any) -> Envelope:
    payload = SpecialistInvocationRequest("heal", {"selector": "#x"}, Budget(5, 0.5), "2026-12-31T00:00:00Z")
    options: dict[str, Any] = {
        "jwt_token": a_token(),
        "capability_token": a_capability("healing.selector"),
        "reply_to": REPLIES,
        **meta,
    }
    return Envelope.build(
        payload, sender=ORCHESTRATOR, to=HEALER, tenant=options.pop("tenant", "acme"), project="web", **options
    )


@dataclass
class Agents:
    transport: Transport
    inbound: Inbound
    sender: Outbound
    calls: list[Envelope]

    async def run(self, handler: Any = None) -> asyncio.Task[None]:
        subscription = await self.transport.subscribe(INVOKE, group="healers", consumer="h1", max_deliveries=3)

        async def heal(envelope: Envelope) -> Payload:
            self.calls.append(envelope)
            return SpecialistResult("succeeded", 0.9, Cost(0.01), proposal={"selector": "#y"})

        return asyncio.create_task(self.inbound.serve(subscription, handler or heal))


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def agents(request: pytest.FixtureRequest) -> AsyncIterator[Agents]:
    transport: Transport
    seen: SeenSet
    idempotency: IdempotencyStore
    client: Any = None
    if request.param == "memory":
        transport, seen, idempotency = MemoryTransport(), MemorySeenSet(), MemoryIdempotency()
    else:
        from redis.asyncio import Redis

        from cmo.a2a.transports.redis import RedisTransport

        url = request.getfixturevalue("redis_server")
        prefix = f"test-{uuid.uuid4().hex[:8]}:"
        transport = RedisTransport.from_url(url, key_prefix=prefix)
        client = Redis.from_url(url)
        seen, idempotency = (
            RedisSeenSet(client, key_prefix=f"{prefix}seen:"),
            RedisIdempotency(client, key_prefix=f"{prefix}idem:"),
        )
    keys = HmacKeys({"k1": SECRET}, current="k1")
    inbound = Inbound(
        me=HEALER,
        tenant="acme",
        project="web",
        keys=keys,
        tokens=TOKENS,
        require_token=True,
        scopes={"SpecialistInvocationRequest": ["specialists.invoke"]},
        capabilities={"SpecialistInvocationRequest": ["healing.selector"]},
        replay=ReplayGuard(seen, window=300, skew=30),
        idempotency=idempotency,
        replies=Outbound(transport, keys=keys),
        retry_delay=0.05,
    )
    try:
        yield Agents(transport, inbound, Outbound(transport, keys=keys), [])
    finally:
        await transport.close()
        if client is not None:
            await client.aclose()


def resigned(envelope: Envelope, keys: HmacKeys | None = None) -> bytes:
    """The envelope with its id recomputed and signed again (by `keys`, or left as it was signed)."""
    document = envelope.to_json()
    document["meta"].pop("signature", None)
    document["meta"]["message_id"] = message_id(document)
    fresh = Envelope.parse(json.dumps(document))
    return (keys or HmacKeys({"k1": SECRET}, current="k1")).sign(fresh).to_bytes()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_hs256_with_the_public_key() -> str:
    header = b64(json.dumps({"alg": "HS256", "kid": "r1", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": ORCHESTRATOR.id, "exp": int(time.time()) + 300}).encode())
    mac = hmac.new(RSA_PEM, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(mac)}"


def alg_none_token() -> str:
    header = b64(json.dumps({"alg": "none", "kid": "t1"}).encode())
    return f"{header}.{b64(json.dumps({'sub': ORCHESTRATOR.id, 'exp': int(time.time()) + 300}).encode())}."


async def test_a_valid_request_is_handled_once_and_answered(agents: Agents):
    replies = await agents.transport.subscribe(REPLIES, group="orchestrator", consumer="o1")
    task = await agents.run()
    sent = await agents.sender.send(request(), INVOKE)
    async for delivery in replies:
        reply = Envelope.parse(delivery.data)
        await delivery.ack()
        break
    task.cancel()
    assert [e.meta.message_id for e in agents.calls] == [sent.meta.message_id]
    assert reply.meta.correlation_id == sent.meta.message_id
    assert reply.payload_as(SpecialistResult).proposal == {"selector": "#y"}
    HmacKeys({"k1": SECRET}, current="k1").verify(reply)


def forgeries() -> list[Any]:
    """Each forgery as a function that builds it when the test runs: tokens minted at collection
    would expire before a long suite reaches them."""

    def tampered_signature() -> bytes:
        signed = HmacKeys({"k1": SECRET}, current="k1").sign(request())
        bad_signature = json.loads(signed.to_bytes())
        bad_signature["payload"]["task"] = "steal"
        bad_signature["meta"]["message_id"] = message_id(bad_signature)
        return json.dumps(bad_signature).encode()

    def unknown_key() -> bytes:
        tampered = request()
        payload_changed = replace(tampered, payload={**tampered.payload, "task": "steal"})
        return resigned(payload_changed, HmacKeys({"k9": b"x" * 32}, current="k9"))

    return [
        pytest.param(tampered_signature, "bad_signature", id="forged-signature"),
        pytest.param(unknown_key, "unknown_key", id="unknown-key"),
        pytest.param(
            lambda: resigned(request(jwt_token=a_token(exp=int(time.time()) - 3600))), "expired_token", id="expired-jwt"
        ),
        pytest.param(lambda: resigned(request(jwt_token=alg_none_token())), "bad_token", id="alg-none"),
        pytest.param(
            lambda: resigned(request(jwt_token=forged_hs256_with_the_public_key())), "bad_token", id="rs256-as-hs256"
        ),
        pytest.param(lambda: resigned(request(jwt_token=None)), "missing_token", id="no-jwt"),
        pytest.param(
            lambda: resigned(request(jwt_token=a_token(scope="specialists.read"))), "missing_scope", id="missing-scope"
        ),
        pytest.param(
            lambda: resigned(request(capability_token=a_capability("healing.other"))),
            "missing_capability",
            id="missing-capability",
        ),
        pytest.param(
            lambda: resigned(request(ts=datetime.now(UTC) - timedelta(hours=1))), "stale_message", id="stale-timestamp"
        ),
        pytest.param(lambda: resigned(request(tenant="evil")), "cross_tenant", id="cross-tenant"),
        pytest.param(lambda: b'{"meta": {}}', "invalid_envelope", id="invalid"),
    ]


@pytest.mark.parametrize(("forge", "reason"), forgeries())
async def test_a_forged_or_bad_envelope_is_dead_lettered_with_its_reason_and_counted(
    agents: Agents, forge: Callable[[], bytes], reason: str
):
    data = forge()
    task = await agents.run()
    await agents.transport.publish(INVOKE, data, message_id=uuid.uuid4().hex)
    [dead] = await assert_eventually(agents.transport.dead_letters, what="the dead letter")
    task.cancel()
    assert dead.reason == reason, dead.detail
    assert dead.data == data
    assert agents.inbound.rejected == {reason: 1}
    assert agents.calls == [], "a rejected envelope reached the handler"


async def test_a_replayed_message_id_is_dead_lettered(agents: Agents):
    task = await agents.run()
    first = await agents.sender.send(request(), INVOKE)
    await assert_eventually(lambda: agents.calls, what="the first handled")
    await agents.transport.publish(INVOKE, first.to_bytes(), message_id=first.meta.message_id + "-again")
    [dead] = await assert_eventually(agents.transport.dead_letters, what="the replay dead-lettered")
    task.cancel()
    assert dead.reason == "replayed_message"
    assert len(agents.calls) == 1


async def test_the_same_envelope_published_100_times_has_one_effect_and_identical_replies(agents: Agents):
    replies = await agents.transport.subscribe(REPLIES, group="orchestrator", consumer="o1", max_pending=200)
    task = await agents.run()
    envelope = await agents.sender.send(request(idempotency_key="run-1:step-2:seq-0"), INVOKE)
    for i in range(99):  # a retried step publishing the same request again
        await agents.transport.publish(INVOKE, envelope.to_bytes(), message_id=f"{envelope.meta.message_id}-{i}")
    got: list[bytes] = []
    async for delivery in replies:
        got.append(delivery.data)
        await delivery.ack()
        if len(got) == 100:
            break
    task.cancel()
    assert len(agents.calls) == 1, "the handler ran more than once"
    assert len(set(got)) == 1, "the replies differ"
    assert agents.inbound.rejected == {}


async def test_a_handler_that_keeps_failing_is_retried_then_dead_lettered(agents: Agents):
    attempts: list[int] = []

    async def broken(envelope: Envelope) -> Payload:
        attempts.append(1)
        raise RuntimeError("the browser crashed")

    task = await agents.run(broken)
    await agents.sender.send(request(), INVOKE)
    [dead] = await assert_eventually(agents.transport.dead_letters, timeout=30, what="dead-lettered after retries")
    task.cancel()
    assert dead.reason == "max_deliveries"
    assert len(attempts) == 3
