"""A graph step invoking a specialist, durably: `await ctx.invoke_specialist("healer", task=..., inputs=...)`.

The step records the moment it asks (an activity), builds its request from it (so a retry builds
the same envelope, with the same message id), records the request (an `a2a.request` activity named
after that id, which is how the server finds the run a reply is for), publishes it (an
`a2a.publish` activity), and waits for the signal `a2a.<message id>`, holding no worker slot. The
server consumes the replies addressed to runs (`cmo_server.a2a`) and signals the run that asked.
A retried or recovered step publishes nothing new; a replay returns the recorded result.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cmo._activity import Activity
from cmo._retry import RetryPolicy
from cmo.a2a._envelope import Envelope
from cmo.a2a._payloads import AgentId, Budget, SpecialistInvocationRequest, SpecialistResult
from cmo.a2a._schemas import parse_rfc3339
from cmo.a2a._signing import HmacKeys
from cmo.a2a.topics import DEFAULT_PREFIX, Topic
from cmo.errors import SignalTimeoutError, SpecialistTimeoutError

if TYPE_CHECKING:
    from cmo._graph import NodeContext
    from cmo.a2a.transports import Transport

__all__ = ["KIND_REQUEST", "ORCHESTRATOR", "REPLY_AGENT", "Messaging", "invoke_specialist", "request_name"]

REPLY_AGENT = "cmo"
"""Who runs' requests come from and replies go to: the entity of `qa.<t>.<p>.agents.cmo.replies`."""
ORCHESTRATOR = AgentId("orchestrator", REPLY_AGENT, "1")
KIND_REQUEST = "a2a.request"
KIND_PUBLISH = "a2a.publish"
KIND_STAMP = "a2a.prepare"


def request_name(message_id: str) -> str:
    """The name a request goes by in its run: its activities' and the signal that brings its answer."""
    return f"a2a.{message_id}"


PUBLISH_RETRY = RetryPolicy(max_attempts=5, initial_interval=timedelta(milliseconds=200))


@dataclass(frozen=True, slots=True)
class Messaging:
    """What a worker's steps need to talk to agents: a transport, the signing keys, the topic prefix."""

    transport: Transport
    keys: HmacKeys
    prefix: str = DEFAULT_PREFIX


def _now() -> str:
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


async def invoke_specialist(
    ctx: NodeContext,
    messaging: Messaging | None,
    specialist: str | AgentId,
    *,
    task: str,
    inputs: dict[str, Any],
    budget: Budget | None,
    timeout: timedelta,
    sequence: int,
) -> SpecialistResult:
    """See `NodeContext.invoke_specialist`. Without `messaging` only a replay (from records) works."""
    target = AgentId("specialist", specialist, "0") if isinstance(specialist, str) else specialist

    # The moment of asking and the topic prefix are recorded first: the request is built from
    # them, so every attempt and every replay builds the same envelope (the same message id).
    async def prepare() -> dict[str, str]:
        if messaging is None:
            raise RuntimeError("ctx.invoke_specialist needs a worker with messaging=cmo.a2a.invoke.Messaging(...)")
        return {"at": _now(), "prefix": messaging.prefix}

    prepared = await ctx.activity(
        Activity(prepare, name="a2a.prepare", retry=RetryPolicy(max_attempts=1), kind=KIND_STAMP)
    )
    asked_at = parse_rfc3339(prepared["at"])
    assert asked_at is not None
    prefix = prepared["prefix"]
    deadline = asked_at + timeout
    request = SpecialistInvocationRequest(
        task,
        inputs,
        budget or Budget(max_minutes=max(timeout.total_seconds() / 60, 0.01), max_cost_usd=0),
        deadline.strftime("%Y-%m-%dT%H:%M:%S.") + f"{deadline.microsecond // 1000:03d}Z",
    )
    envelope = Envelope.build(
        request,
        sender=ORCHESTRATOR,
        to=target,
        tenant=ctx.tenant,
        project=ctx.project,
        trace_id=hashlib.sha256(ctx.run_id.encode()).hexdigest()[:32],
        ts=asked_at,
        idempotency_key=f"{ctx.run_id}:{ctx.step_index}:{sequence}",
        reply_to=str(Topic.replies(ctx.tenant, ctx.project, REPLY_AGENT, prefix=prefix)),
    )
    message_id = envelope.meta.message_id
    topic = str(Topic.specialist_invoke(ctx.tenant, ctx.project, target.id, prefix=prefix))

    # The request is on record (durable on the server, as every record is before the next activity
    # starts) before it is published: a reply, however fast, always finds the run that asked.
    async def on_record(topic: str, message_id: str) -> str:
        return message_id

    async def publish(topic: str, message_id: str) -> str:
        if messaging is None:
            raise RuntimeError("ctx.invoke_specialist needs a worker with messaging=cmo.a2a.invoke.Messaging(...)")
        signed = messaging.keys.sign(envelope)
        await messaging.transport.publish(topic, signed.to_bytes(), message_id=message_id)
        return message_id

    once = RetryPolicy(max_attempts=1)
    await ctx.activity(
        Activity(on_record, name=request_name(message_id), retry=once, kind=KIND_REQUEST), topic, message_id
    )
    publisher = Activity(publish, name=request_name(message_id), retry=PUBLISH_RETRY, kind=KIND_PUBLISH)
    await ctx.activity(publisher, topic, message_id)
    try:
        answer = await ctx.wait_for_signal(request_name(message_id), timeout=timeout)
    except SignalTimeoutError:
        raise SpecialistTimeoutError(target.id, timeout) from None
    return SpecialistResult.from_json(answer)
