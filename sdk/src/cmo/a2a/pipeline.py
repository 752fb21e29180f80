"""The send and receive pipelines: nothing unverified reaches a handler, nothing rejected is dropped.

Send: validate → sign → wire gate → publish. Receive: parse and validate → namespace → signature →
JWT → capability token → timestamp window → idempotency guard → seen-set → wire gate → handler →
reply → ack. A rejection is counted by its reason and dead-lettered with it (the delivery is
terminated), so the dead-letter stream says why; a handler that raises is retried (nak with a
delay) until the transport dead-letters it after its deliveries.

Duplicates: an envelope with an `idempotency_key` whose handling is done is not handled again; the
reply it got is published again, byte for byte (same message id), so a retried request gets the
same answer. Without a key, a message id seen within the window is a replay: refused. A
redelivery of one stored message (the transport's, after a consumer died) is neither.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from cmo.a2a._envelope import Envelope
from cmo.a2a._payloads import AgentId, Payload
from cmo.a2a._schemas import check_envelope
from cmo.a2a._signing import HmacKeys
from cmo.a2a.errors import RejectedEnvelope
from cmo.a2a.replay import ReplayGuard
from cmo.a2a.scopes import grants, has_capabilities, scopes_of
from cmo.a2a.topics import Topic
from cmo.a2a.transports import Delivery, Subscription, Transport

__all__ = [
    "Handler",
    "IdempotencyStore",
    "Inbound",
    "MemoryIdempotency",
    "Outbound",
    "RedisIdempotency",
    "WireGate",
]

logger = logging.getLogger(__name__)

WireGate = Callable[[Envelope, str, str], Awaitable[None]]
"""`gate(envelope, topic, "send" | "receive")`: raises RejectedEnvelope (`denied_by_policy`) to refuse."""
Handler = Callable[[Envelope], Awaitable[Payload | None]]
"""Handles an accepted envelope; what it returns is the reply (to `reply_to`), if any."""

_HANDLED = b"-"
"""What the idempotency store keeps for a handling that had no reply."""


class IdempotencyStore(Protocol):
    """Replies by idempotency key, kept for a time to live."""

    async def get(self, key: str) -> bytes | None:
        """The reply kept for `key` (`-` for a handling without one), or None."""

    async def put(self, key: str, reply: bytes, ttl: float) -> None:
        """Keep `reply` for `key` for `ttl` seconds."""


class MemoryIdempotency:
    """An idempotency store in this process."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[float, bytes]] = {}

    async def get(self, key: str) -> bytes | None:
        """The reply kept for `key`, if it has not expired."""
        kept = self._kept.get(key)
        return kept[1] if kept is not None and kept[0] > time.monotonic() else None

    async def put(self, key: str, reply: bytes, ttl: float) -> None:
        """Keep `reply` for `key` for `ttl` seconds."""
        self._kept[key] = (time.monotonic() + ttl, reply)


class RedisIdempotency:
    """An idempotency store shared through Redis, so every consumer of a group sees a handling."""

    def __init__(self, client: Any, *, key_prefix: str = "cmo:a2a:idem:") -> None:
        self._redis = client
        self._prefix = key_prefix

    async def get(self, key: str) -> bytes | None:
        """The reply kept for `key`."""
        kept: bytes | None = await self._redis.get(f"{self._prefix}{key}")
        return kept

    async def put(self, key: str, reply: bytes, ttl: float) -> None:
        """Keep `reply` for `key` for `ttl` seconds."""
        await self._redis.set(f"{self._prefix}{key}", reply, px=max(int(ttl * 1000), 1))


class Outbound:
    """Validates, signs, gates and publishes envelopes."""

    def __init__(self, transport: Transport, *, keys: HmacKeys | None = None, gate: WireGate | None = None) -> None:
        self._transport = transport
        self._keys = keys
        self._gate = gate

    async def send(self, envelope: Envelope, topic: str | Topic) -> Envelope:
        """Publish `envelope` on `topic`; returns it as sent (signed). RejectedEnvelope if a gate refuses."""
        check_envelope(envelope.to_json())
        signed = self._keys.sign(envelope) if self._keys is not None else envelope
        if self._gate is not None:
            await self._gate(signed, str(topic), "send")
        await self._transport.publish(str(topic), signed.to_bytes(), message_id=signed.meta.message_id)
        return signed

    async def send_bytes(self, data: bytes, topic: str, message_id: str) -> None:
        """Publish an envelope sent before, exactly as it was (a cached reply)."""
        await self._transport.publish(topic, data, message_id=message_id)


class Inbound:
    """The receive pipeline of one agent, in one namespace."""

    def __init__(
        self,
        *,
        me: AgentId,
        tenant: str,
        project: str,
        keys: HmacKeys | None = None,
        tokens: Any = None,
        require_token: bool = False,
        scopes: Mapping[str, Sequence[str]] | None = None,
        capabilities: Mapping[str, Sequence[str]] | None = None,
        replay: ReplayGuard | None = None,
        idempotency: IdempotencyStore | None = None,
        idempotency_ttl: float = 24 * 3600.0,
        gate: WireGate | None = None,
        replies: Outbound | None = None,
        retry_delay: float = 1.0,
    ) -> None:
        """Configure what an envelope must pass.

        Args:
            me: This agent, the sender of its replies.
            tenant: The namespace it serves: an envelope of another is refused (`cross_tenant`).
            project: See `tenant`.
            keys: Verify signatures with these (unsigned envelopes are then refused).
            tokens: A `cmo.a2a.tokens.TokenVerifier` for `jwt_token` and `capability_token`.
            require_token: Refuse an envelope without a `jwt_token` (`missing_token`).
            scopes: The scopes (scope rules) the sender's JWT must grant, by message type; a type
                listed here needs a JWT (`missing_scope` otherwise).
            capabilities: The capabilities (scope rules) a capability token must grant, by message
                type; a type listed here needs a capability token.
            replay: The timestamp window and seen-set (a default one in memory if None).
            idempotency: Where replies are kept by idempotency key.
            idempotency_ttl: How long a reply is kept.
            gate: A wire gate, asked last before the handler.
            replies: Where replies go (needed for handlers that return one).
            retry_delay: Seconds before a delivery whose handler raised comes again.
        """
        self.me = me
        self.tenant, self.project = tenant, project
        self._keys = keys
        self._tokens = tokens
        self._require_token = require_token
        self._scopes = dict(scopes or {})
        self._capabilities = dict(capabilities or {})
        self._replay = replay or ReplayGuard()
        self._idempotency = idempotency
        self._idempotency_ttl = idempotency_ttl
        self._gate = gate
        self._replies = replies
        self._retry_delay = retry_delay
        self.rejected: collections.Counter[str] = collections.Counter()
        """Rejections by reason."""
        self.handled = 0

    async def serve(self, subscription: Subscription, handler: Handler, *, concurrency: int = 1) -> None:
        """Run every delivery of `subscription` through the pipeline until it ends or is cancelled.

        With `concurrency` above 1, that many deliveries are handled at once (their acks and
        replies overlap); the subscription's `max_pending` still bounds what is held.
        """
        if concurrency <= 1:
            async for delivery in subscription:
                await self.handle(delivery, handler)
            return
        slots = asyncio.Semaphore(concurrency)
        running: set[asyncio.Task[None]] = set()

        async def one(delivery: Delivery) -> None:
            try:
                await self.handle(delivery, handler)
            finally:
                slots.release()

        try:
            async for delivery in subscription:
                await slots.acquire()
                task = asyncio.create_task(one(delivery))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in list(running):
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def handle(self, delivery: Delivery, handler: Handler) -> None:
        """One delivery: accepted and handled (then acked), or rejected (dead-lettered), or retried."""
        try:
            envelope = await self.accept(delivery)
        except RejectedEnvelope as rejection:
            self.rejected[rejection.reason] += 1
            logger.warning("rejected %s on %s: %s", delivery.message_id[:16], delivery.topic, rejection)
            await delivery.term(rejection.reason, rejection.detail)
            return
        if envelope is None:  # a duplicate answered from the idempotency store
            await delivery.ack()
            return
        try:
            reply = await handler(envelope)
        except RejectedEnvelope as rejection:  # the handler refuses it for good (a type it has no route for)
            self.rejected[rejection.reason] += 1
            await delivery.term(rejection.reason, rejection.detail)
            return
        except Exception:
            logger.exception("handler failed on %s (delivery %d)", envelope.meta.message_id[:16], delivery.deliveries)
            await delivery.nak(self._retry_delay)
            return
        sent = await self._reply(envelope, reply)
        if self._idempotency is not None and envelope.meta.idempotency_key:
            await self._idempotency.put(self._idempotency_key(envelope), sent or _HANDLED, self._idempotency_ttl)
        self.handled += 1
        await delivery.ack()

    async def accept(self, delivery: Delivery) -> Envelope | None:
        """The verified envelope of a delivery; None for a duplicate already answered. RejectedEnvelope if refused."""
        envelope = Envelope.parse(delivery.data)
        meta = envelope.meta
        if (meta.tenant, meta.project) != (self.tenant, self.project) or not _in_namespace(
            delivery.topic, meta.tenant, meta.project
        ):
            raise RejectedEnvelope(
                "cross_tenant", f"an envelope of {meta.tenant}/{meta.project} on {delivery.topic[:128]}"
            )
        if self._keys is not None:
            self._keys.verify(envelope)
        self._check_tokens(envelope)
        self._replay.check_time(envelope)
        if await self._answered_before(envelope):
            return None
        if delivery.deliveries == 1:  # a redelivery of the same stored message is not a replay
            await self._replay.check_seen(envelope)
        if self._gate is not None:
            await self._gate(envelope, delivery.topic, "receive")
        return envelope

    def _check_tokens(self, envelope: Envelope) -> None:
        meta = envelope.meta
        wanted = self._scopes.get(meta.type)
        if meta.jwt_token is None:
            if self._require_token or wanted:
                raise RejectedEnvelope("missing_token", "the envelope carries no jwt_token")
        elif self._tokens is not None:
            claims = self._tokens.verify(meta.jwt_token)
            if claims.get("sub") != meta.sender.id:
                raise RejectedEnvelope("bad_token", f"the token is {claims.get('sub')!r}'s, not the sender's")
            granted = scopes_of(claims)
            missing = [need for need in wanted or () if not any(grants(g, need) for g in granted)]
            if missing:
                raise RejectedEnvelope("missing_scope", f"a {meta.type} needs the scope {', '.join(missing)}")
        elif wanted:
            raise RejectedEnvelope("missing_scope", "no token verifier: the scopes cannot be checked")
        needed = self._capabilities.get(meta.type)
        if needed is None:
            return
        if meta.capability_token is None or self._tokens is None:
            raise RejectedEnvelope("missing_capability", f"a {meta.type} needs a capability token")
        capability = self._tokens.verify(meta.capability_token, audience=self.me.id)
        if capability.get("sub") != meta.sender.id:
            raise RejectedEnvelope("missing_capability", "the capability token is another agent's")
        if not has_capabilities(capability, needed):
            raise RejectedEnvelope("missing_capability", f"a {meta.type} needs {', '.join(needed)}")

    async def _answered_before(self, envelope: Envelope) -> bool:
        """Whether a handling of this idempotency key is done: its reply (if any) is published again."""
        if self._idempotency is None or not envelope.meta.idempotency_key:
            return False
        kept = await self._idempotency.get(self._idempotency_key(envelope))
        if kept is None:
            return False
        if kept != _HANDLED and self._replies is not None and envelope.meta.reply_to:
            reply = Envelope.parse(kept)
            await self._replies.send_bytes(kept, envelope.meta.reply_to, reply.meta.message_id)
        return True

    async def _reply(self, request: Envelope, payload: Payload | None) -> bytes | None:
        if payload is None or not request.meta.reply_to:
            return None
        if self._replies is None:
            raise RuntimeError("a handler returned a reply, but the pipeline has no `replies` to send it with")
        reply = Envelope.build(
            payload,
            sender=self.me,
            to=request.meta.sender,
            tenant=self.tenant,
            project=self.project,
            trace_id=request.meta.trace_id,
            correlation_id=request.meta.message_id,
        )
        sent = await self._replies.send(reply, request.meta.reply_to)
        return sent.to_bytes()

    def _idempotency_key(self, envelope: Envelope) -> str:
        meta = envelope.meta
        return f"{meta.tenant}/{meta.project}/{meta.sender.id}/{meta.idempotency_key}"


def _in_namespace(topic: str, tenant: str, project: str) -> bool:
    try:
        parsed = Topic.parse(topic)
    except ValueError:
        return False
    return (parsed.tenant, parsed.project) == (tenant, project)
