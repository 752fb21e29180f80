"""Replay protection across consumers: the Redis seen-set, on a real Redis."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from cmo.a2a import RejectedEnvelope
from cmo.a2a.replay import RedisSeenSet, ReplayGuard
from tests.unit.test_a2a_tokens import heartbeat


@pytest.mark.redis
async def test_the_redis_seen_set_is_shared_by_every_guard(redis_server: str):
    client = Redis.from_url(redis_server)
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    try:
        one, two = (ReplayGuard(RedisSeenSet(client, key_prefix=prefix)) for _ in range(2))
        envelope = heartbeat(datetime.now(UTC))
        await one.check(envelope)
        with pytest.raises(RejectedEnvelope) as raised:
            await two.check(envelope)  # another consumer of the group: refused there too
        assert raised.value.reason == "replayed_message"
        assert 0 < await client.pttl(f"{prefix}{envelope.meta.message_id}") <= 330_000
    finally:
        await client.aclose()
