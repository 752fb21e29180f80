"""Agents in a few lines: a specialist that answers invocations, routing by type, decision notices.

```python
async def heal(request: SpecialistInvocationRequest, envelope: Envelope) -> SpecialistResult:
    return SpecialistResult("succeeded", confidence=0.9, cost=Cost(0.01), proposal={...})

healer = Specialist(AgentId("specialist", "healer", "1.0"), tenant="acme", project="web",
                    transport=RedisTransport.from_url(url), handler=heal, keys=keys)
await healer.run()   # until healer.stop()
```
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from cmo.a2a._envelope import Envelope
from cmo.a2a._payloads import (
    AgentId,
    DecisionNotice,
    Issue,
    NextAction,
    Payload,
    ScoringSummary,
    SpecialistInvocationRequest,
    SpecialistResult,
)
from cmo.a2a._signing import HmacKeys
from cmo.a2a.errors import RejectedEnvelope
from cmo.a2a.pipeline import Handler, IdempotencyStore, Inbound, Outbound
from cmo.a2a.replay import ReplayGuard
from cmo.a2a.topics import DEFAULT_PREFIX, Topic
from cmo.a2a.transports import Subscription, Transport
from cmo.registry import AgentPresence, RegistryClient, TopicRole

__all__ = ["DecisionNoticePublisher", "Specialist", "route"]

P = TypeVar("P", bound=Payload)
TypedHandler = Callable[[Any, Envelope], Awaitable[Payload | None]]


def route(handlers: Mapping[type[Payload], TypedHandler]) -> Handler:
    """A handler that calls the one for the envelope's type with its typed payload.

    An envelope of a type without a handler is refused (`unsupported_type`): dead-lettered, not
    retried.
    """
    by_type = {model.message_type: (model, handler) for model, handler in handlers.items()}

    async def routed(envelope: Envelope) -> Payload | None:
        found = by_type.get(envelope.meta.type)
        if found is None:
            raise RejectedEnvelope("unsupported_type", f"this agent handles no {envelope.meta.type}")
        model, handler = found
        return await handler(envelope.payload_as(model), envelope)

    return routed


class Specialist:
    """A specialist agent: takes SpecialistInvocationRequests on its invoke topic, answers SpecialistResults.

    Its instances share the load (one consumer group), and every request goes through the
    receive pipeline (`Inbound`) before `handler` sees it; the answer goes to the request's
    `reply_to`, signed with `keys`.

    With `registry` (`client.registry`), the instance is kept in the agent registry while it runs
    (kind "specialist", what it `provides` as its capabilities, its load the share of
    `max_pending` in hand) and
    deregistered when it stops; it then also takes requests on a topic of its own
    (`...specialists.<instance>.invoke`), where `ctx.invoke_specialist(capability=...)` asks it.
    Give each instance a stable `instance` id (a pod name) in production.
    """

    def __init__(
        self,
        agent: AgentId,
        *,
        tenant: str,
        project: str,
        transport: Transport,
        handler: Callable[[SpecialistInvocationRequest, Envelope], Awaitable[SpecialistResult]],
        keys: HmacKeys | None = None,
        tokens: Any = None,
        require_token: bool = False,
        capabilities: Sequence[str] = (),
        replay: ReplayGuard | None = None,
        idempotency: IdempotencyStore | None = None,
        consumer: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        max_pending: int = 16,
        ack_wait: float = 60.0,
        max_deliveries: int = 5,
        registry: RegistryClient | None = None,
        instance: str | None = None,
        lease: timedelta = timedelta(seconds=60),
        provides: Sequence[str] = (),
    ) -> None:
        self.agent = agent
        self.topic = Topic.specialist_invoke(tenant, project, agent.id, prefix=prefix)
        self.instance = instance or f"{agent.id}-{uuid.uuid4().hex[:8]}"[:63]
        """This instance's agent id in the registry (a topic token: a-z, 0-9, '_' and '-')."""
        self.instance_topic = Topic.specialist_invoke(tenant, project, self.instance, prefix=prefix)
        self._busy = 0
        self.presence = (
            AgentPresence(
                registry,
                self.instance,
                kind="specialist",
                tenant=tenant,
                project=project,
                name=agent.id,
                version=agent.version,
                capabilities=list(provides),
                topics=[(str(self.topic), TopicRole.SUBSCRIBE), (str(self.instance_topic), TopicRole.SUBSCRIBE)],
                lease=lease,
                load=lambda: min(self._busy / max_pending, 1.0),
                transport=transport,
                keys=keys,
                prefix=prefix,
            )
            if registry is not None
            else None
        )
        """How the instance is kept in the registry; None without `registry`."""
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self._transport = transport
        self._max_pending, self._ack_wait, self._max_deliveries = max_pending, ack_wait, max_deliveries
        self.inbound = Inbound(
            me=agent,
            tenant=tenant,
            project=project,
            keys=keys,
            tokens=tokens,
            require_token=require_token,
            capabilities={SpecialistInvocationRequest.message_type: list(capabilities)} if capabilities else None,
            replay=replay,
            idempotency=idempotency,
            replies=Outbound(transport, keys=keys),
        )
        self._handler = route({SpecialistInvocationRequest: self._counted(handler)})
        self._running: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        """Set once it has subscribed: from then on no invocation published is missed."""

    async def run(self) -> None:
        """Serve until `stop()`."""
        subscriptions = [await self._subscribe(self.topic, f"specialist-{self.agent.id}")]
        try:
            if self.presence is not None:
                subscriptions.append(await self._subscribe(self.instance_topic, f"specialist-{self.instance}"))
                await self.presence.start()
            self._running = asyncio.current_task()
            self.ready.set()
            async with asyncio.TaskGroup() as serving:
                for subscription in subscriptions:
                    serving.create_task(self.inbound.serve(subscription, self._handler))
        except asyncio.CancelledError:
            pass
        finally:
            if self.presence is not None:
                await self.presence.aclose("the specialist stopped")
            for subscription in subscriptions:
                await subscription.close()

    async def _subscribe(self, topic: Topic, group: str) -> Subscription:
        return await self._transport.subscribe(
            str(topic),
            group=group,
            consumer=self.consumer,
            max_deliveries=self._max_deliveries,
            ack_wait=self._ack_wait,
            max_pending=self._max_pending,
        )

    def _counted(
        self, handler: Callable[[SpecialistInvocationRequest, Envelope], Awaitable[SpecialistResult]]
    ) -> Callable[[SpecialistInvocationRequest, Envelope], Awaitable[SpecialistResult]]:
        async def counted(request: SpecialistInvocationRequest, envelope: Envelope) -> SpecialistResult:
            self._busy += 1
            try:
                return await handler(request, envelope)
            finally:
                self._busy -= 1

        return counted

    def stop(self) -> None:
        """Stop serving (a delivery being handled is not acked: it comes again to another instance)."""
        if self._running is not None:
            self._running.cancel()


class DecisionNoticePublisher:
    """Publishes an orchestrator's decisions on its decisions topic."""

    def __init__(
        self, outbound: Outbound, *, me: AgentId, tenant: str, project: str, prefix: str = DEFAULT_PREFIX
    ) -> None:
        self._outbound = outbound
        self._me = me
        self._tenant, self._project = tenant, project
        self.topic = Topic.orchestrator_decisions(tenant, project, me.id, prefix=prefix)

    async def publish(
        self,
        decision: str,
        rationale: str,
        scoring: ScoringSummary,
        *,
        to: AgentId | Sequence[AgentId],
        next_actions: Sequence[NextAction] = (),
        issues: Sequence[Issue] = (),
        correlation_id: str | None = None,
        trace_id: str | None = None,
    ) -> Envelope:
        """Approve or reject, saying why and what comes next; returns the envelope as sent."""
        notice = DecisionNotice(decision, rationale, scoring, list(next_actions), list(issues))
        envelope = Envelope.build(
            notice,
            sender=self._me,
            to=to if isinstance(to, AgentId) else tuple(to),
            tenant=self._tenant,
            project=self._project,
            correlation_id=correlation_id,
            trace_id=trace_id,
        )
        return await self._outbound.send(envelope, self.topic)
