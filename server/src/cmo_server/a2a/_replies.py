"""Consume agents' replies and hand each to the run that asked, as the signal its step waits for.

A graph step asks an agent by publishing a request whose `reply_to` is the server's reply topic
of the run's namespace (`qa.<tenant>.<project>.agents.cmo.replies`), and records it as an
`a2a.request` activity named after the request's message id; then it waits for the signal
`a2a.<message id>`. The server's replicas consume those topics in one consumer group, verify each
reply, find the run by the reply's `correlation_id` and signal it. A reply is delivered once
(the signal's request id is the reply's message id, so a repeat is ignored). One whose request is
not recorded yet (the step records it just after publishing) is tried again shortly; one that
cannot be delivered is dead-lettered with its reason.
"""

from __future__ import annotations

import logging
import os
import socket

from cmo.a2a import DEFAULT_PREFIX, Envelope, HmacKeys, RejectedEnvelope, Topic
from cmo.a2a.invoke import REPLY_AGENT, request_name
from cmo.a2a.transports import Delivery, Transport
from cmo.serialization import canonical_json
from cmo_server.domain import Namespace, NewSignal
from cmo_server.engine import Engine
from cmo_server.errors import CmoServerError
from cmo_server.store import RequestStore

__all__ = ["ReplyConsumer"]

logger = logging.getLogger(__name__)

REPLY_TYPES = frozenset({"SpecialistResult", "TaskResult"})
RETRY_UNKNOWN_AFTER = 0.5
"""Seconds before a reply whose request is not recorded yet is looked up again."""


class ReplyConsumer:
    """Delivers verified replies to the runs waiting for them."""

    def __init__(
        self,
        engine: Engine,
        requests: RequestStore,
        transport: Transport,
        *,
        keys: HmacKeys,
        prefix: str = DEFAULT_PREFIX,
        max_deliveries: int = 20,
    ) -> None:
        self._engine = engine
        self._requests = requests
        self._transport = transport
        self._keys = keys
        self.pattern = f"{prefix}.*.*.agents.{REPLY_AGENT}.replies"
        self._max_deliveries = max_deliveries
        self.delivered = 0

    async def run(self) -> None:
        """Consume until cancelled (one group for every replica: each reply reaches one)."""
        subscription = await self._transport.subscribe(
            self.pattern,
            group="cmo-server",
            consumer=f"{socket.gethostname()}-{os.getpid()}",
            max_deliveries=self._max_deliveries,
            ack_wait=30.0,
        )
        try:
            async for delivery in subscription:
                await self.deliver(delivery)
        finally:
            await subscription.close()

    async def deliver(self, delivery: Delivery) -> None:
        """Hand one reply to its run, try it again later, or dead-letter it."""
        try:
            envelope = self._verified(delivery)
        except RejectedEnvelope as rejection:
            logger.warning("reply %s refused: %s", delivery.message_id[:16], rejection)
            await delivery.term(rejection.reason, rejection.detail)
            return
        meta = envelope.meta
        assert meta.correlation_id is not None
        namespace = Namespace(meta.tenant, meta.project)
        run_id = await self._requests.run_of_request(namespace, meta.correlation_id)
        if run_id is None:
            if delivery.deliveries >= self._max_deliveries:
                await delivery.term("unknown_request", f"no run asked {meta.correlation_id[:16]}…")
            else:
                await delivery.nak(RETRY_UNKNOWN_AFTER)
            return
        signal = NewSignal(
            namespace,
            run_id,
            name=request_name(meta.correlation_id),
            payload=canonical_json(envelope.payload),
            request_id=meta.message_id,
        )
        try:
            await self._engine.signal_run(signal)
        except CmoServerError as err:  # the run is gone, or its payload over the limit
            await delivery.term("not_delivered", str(err))
            return
        self.delivered += 1
        await delivery.ack()

    def _verified(self, delivery: Delivery) -> Envelope:
        envelope = Envelope.parse(delivery.data)
        meta = envelope.meta
        try:
            topic = Topic.parse(delivery.topic)
        except ValueError:
            raise RejectedEnvelope("cross_tenant", f"not a topic: {delivery.topic[:128]}") from None
        if (topic.tenant, topic.project) != (meta.tenant, meta.project):
            raise RejectedEnvelope("cross_tenant", f"an envelope of {meta.tenant}/{meta.project} on {delivery.topic}")
        self._keys.verify(envelope)
        if meta.type not in REPLY_TYPES:
            raise RejectedEnvelope("unsupported_type", f"a {meta.type} is not a reply")
        if not meta.correlation_id:
            raise RejectedEnvelope("missing_correlation", "a reply names the request it answers in correlation_id")
        return envelope
