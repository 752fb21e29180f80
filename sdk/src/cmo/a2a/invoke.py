"""A graph step invoking a specialist, durably: `await ctx.invoke_specialist("healer", task=..., inputs=...)`.

The step records the moment it asks (an activity), builds its request from it (so a retry builds
the same envelope, with the same message id), records the request (an `a2a.request` activity named
after that id, which is how the server finds the run a reply is for), publishes it (an
`a2a.publish` activity), and waits for the signal `a2a.<message id>`, holding no worker slot. The
server consumes the replies addressed to runs (`cmo_server.a2a`) and signals the run that asked.
A retried or recovered step publishes nothing new; a replay returns the recorded result.

By capability (`ctx.invoke_specialist(capability="healing.selector", ...)`) the step first picks
a HEALTHY agent from the registry (a recorded `a2a.discover` activity, so a replay picks the same
one), asks it on its own invoke topic, and records the request with that agent's id as its result
(`{"agent_id": ..., "message_id": ...}`). Should the agent become UNAVAILABLE before answering, the
server signals the waiting run with `{"cmo_agent_unavailable": {...}}` instead of an answer, and
the step asks another one (at most `MAX_ROUTES` agents) or fails with SpecialistUnavailableError.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
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
from cmo.errors import SignalTimeoutError, SpecialistTimeoutError, SpecialistUnavailableError
from cmo.serialization import canonical_json

if TYPE_CHECKING:
    from cmo._graph import NodeContext
    from cmo.a2a.transports import Transport
    from cmo.registry import AgentInfo, RegistryClient

__all__ = [
    "KIND_REQUEST",
    "MAX_ROUTES",
    "ORCHESTRATOR",
    "REPLY_AGENT",
    "UNAVAILABLE_NOTICE",
    "Messaging",
    "addressed_prefix",
    "invoke_specialist",
    "request_name",
    "unavailable_notice",
]

REPLY_AGENT = "cmo"
"""Who runs' requests come from and replies go to: the entity of `qa.<t>.<p>.agents.cmo.replies`."""
ORCHESTRATOR = AgentId("orchestrator", REPLY_AGENT, "1")
KIND_REQUEST = "a2a.request"
KIND_PUBLISH = "a2a.publish"
KIND_STAMP = "a2a.prepare"
KIND_DISCOVER = "a2a.discover"
MAX_ROUTES = 3
"""Agents one invocation by capability asks at most, one after another, while each leaves unanswered."""
UNAVAILABLE_NOTICE = "cmo_agent_unavailable"
"""The key of what the server signals, instead of an answer, when the agent asked has left."""


def request_name(message_id: str) -> str:
    """The name a request goes by in its run: its activities' and the signal that brings its answer."""
    return f"a2a.{message_id}"


def addressed_prefix(agent_id: str) -> bytes:
    """How the record of a request to `agent_id` begins (canonical JSON sorts `agent_id` first)."""
    return canonical_json({"agent_id": agent_id})[:-1] + b","


def unavailable_notice(agent_id: str, reason: str) -> bytes:
    """What the server signals a run whose request `agent_id` will not answer."""
    return canonical_json({UNAVAILABLE_NOTICE: {"agent_id": agent_id, "reason": reason}})


PUBLISH_RETRY = RetryPolicy(max_attempts=5, initial_interval=timedelta(milliseconds=200))
DISCOVER_RETRY = RetryPolicy(max_attempts=5, initial_interval=timedelta(milliseconds=200))


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
    specialist: str | AgentId | None,
    *,
    capability: str | None = None,
    version: str = "",
    registry: RegistryClient | None = None,
    task: str,
    inputs: dict[str, Any],
    budget: Budget | None,
    timeout: timedelta,
    next_sequence: Callable[[], int],
) -> SpecialistResult:
    """See `NodeContext.invoke_specialist`. Without `messaging` only a replay (from records) works."""
    if capability is None:
        assert specialist is not None
        target = AgentId("specialist", specialist, "0") if isinstance(specialist, str) else specialist
        answer = await _ask(
            ctx, messaging, target, None, task=task, inputs=inputs, budget=budget, timeout=timeout,
            sequence=next_sequence(),
        )  # fmt: skip
        assert isinstance(answer, SpecialistResult)  # nothing names an agent to be told it left
        return answer

    async def discover(capability: str, version: str, excluded: list[str]) -> dict[str, str] | None:
        if registry is None:
            raise RuntimeError("ctx.invoke_specialist(capability=...) needs a worker connected to a server")
        agents = await registry.discover(capability, version=version, limit=MAX_ROUTES + len(excluded) + 5)
        for agent in agents:
            topic = _invoke_topic(agent, prefix=messaging.prefix if messaging is not None else DEFAULT_PREFIX)
            if agent.agent_id not in excluded and topic is not None:
                return {
                    "agent_id": agent.agent_id,
                    "name": agent.name or agent.agent_id,
                    "version": agent.version or "0",
                    "topic": topic,
                }
        return None

    excluded: list[str] = []
    for _ in range(MAX_ROUTES):
        chosen = await ctx.activity(
            Activity(discover, name=KIND_DISCOVER, retry=DISCOVER_RETRY, kind=KIND_DISCOVER),
            capability,
            version,
            excluded,
        )
        if chosen is None:
            break
        answer = await _ask(
            ctx, messaging, _agent_id_of(chosen), chosen, task=task, inputs=inputs, budget=budget,
            timeout=timeout, sequence=next_sequence(),
        )  # fmt: skip
        if isinstance(answer, SpecialistResult):
            return answer
        excluded.append(chosen["agent_id"])
    raise SpecialistUnavailableError(capability, excluded)


def _agent_id_of(chosen: dict[str, str]) -> AgentId:
    return AgentId("specialist", chosen["name"], chosen["version"])


def _invoke_topic(agent: AgentInfo, *, prefix: str) -> str | None:
    """Where to ask this agent: its own invoke topic if it takes one, else any invoke topic it takes."""
    topics = agent.subscribes_to()
    try:
        own = str(Topic.specialist_invoke(agent.tenant, agent.project, agent.agent_id, prefix=prefix))
    except ValueError:  # an agent id that is no topic token has no topic of its own
        own = ""
    if own in topics:
        return own
    return next((t for t in topics if t.endswith(".invoke") and "*" not in t and ">" not in t), None)


class _Unanswered:
    """The agent asked left without answering."""


async def _ask(
    ctx: NodeContext,
    messaging: Messaging | None,
    target: AgentId,
    chosen: dict[str, str] | None,
    *,
    task: str,
    inputs: dict[str, Any],
    budget: Budget | None,
    timeout: timedelta,
    sequence: int,
) -> SpecialistResult | _Unanswered:
    """Ask one agent (`chosen`, from discovery; else `target` on its shared invoke topic) and wait."""

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
    if chosen is not None:
        topic = chosen["topic"]
    else:
        topic = str(Topic.specialist_invoke(ctx.tenant, ctx.project, target.id, prefix=prefix))

    # The request is on record (durable on the server, as every record is before the next activity
    # starts) before it is published: a reply, however fast, always finds the run that asked; a
    # request to a discovered agent records that agent, so that the server can tell the run if
    # the agent leaves without answering.
    async def on_record(topic: str, message_id: str) -> str | dict[str, str]:
        if chosen is None:
            return message_id
        return {"agent_id": chosen["agent_id"], "message_id": message_id}

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
        raise SpecialistTimeoutError(chosen["agent_id"] if chosen else target.id, timeout) from None
    if isinstance(answer, dict) and UNAVAILABLE_NOTICE in answer:
        return _Unanswered()
    return SpecialistResult.from_json(answer)
