"""A graph step invoking a specialist durably, on a real Redis and a real NATS: the request is recorded, the step
waits holding no slot, the server hands the verified reply to the run, a replay needs no network."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

import cmo
from cmo.a2a import AgentId, Budget, Cost, Envelope, HmacKeys, SpecialistInvocationRequest, SpecialistResult
from cmo.a2a.agents import Specialist
from cmo.a2a.invoke import Messaging
from cmo.a2a.transports import Transport
from cmo.a2a.transports.redis import RedisTransport
from cmo.errors import RunFailedError
from cmo.testing import Replayer
from cmo_server.app import CmoServer
from cmo_server.config import MessagingConfig, ServerConfig
from tests.integration.test_runs import serving, unique
from tests.support.waiting import assert_eventually

SECRET = b"invoke-test-key-0123456789abcdefgh"
KEYS = HmacKeys({"k1": SECRET}, current="k1")


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis), pytest.param("nats", marks=pytest.mark.nats)])
def messaging_url(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Which transport the server, the worker and the specialist share: (kind, URL)."""
    return request.param, request.getfixturevalue(f"{request.param}_server")


@pytest.fixture
async def a2a_server(
    server_config: ServerConfig, messaging_url: tuple[str, str]
) -> AsyncIterator[tuple[CmoServer, str]]:
    kind, url = messaging_url
    prefix = f"t{uuid.uuid4().hex[:8]}"
    where = {"redis_url": url} if kind == "redis" else {"nats_url": url}
    messaging = MessagingConfig(**where, a2a_keys=(("k1", SECRET),), a2a_prefix=prefix)
    async with CmoServer.running(replace(server_config, messaging=messaging)) as server:
        yield server, prefix


@pytest.fixture
async def transport(messaging_url: tuple[str, str]) -> AsyncIterator[Transport]:
    kind, url = messaging_url
    opened: Transport
    if kind == "redis":
        opened = RedisTransport.from_url(url)
    else:
        from cmo.a2a.transports.nats import NatsTransport

        opened = await NatsTransport.connect(url)
    try:
        yield opened
    finally:
        await opened.close()


def healer(transport: Transport, prefix: str, calls: list[dict[str, Any]], delay: float = 0.0) -> Specialist:
    async def heal(request: SpecialistInvocationRequest, envelope: Envelope) -> SpecialistResult:
        calls.append(request.inputs)
        await asyncio.sleep(delay)
        return SpecialistResult(
            "succeeded", 0.9, Cost(0.02), proposal={"selector": request.inputs["selector"] + "-fixed"}
        )

    return Specialist(
        AgentId("specialist", "healer", "1.0"), tenant="default", project="default", transport=transport,
        handler=heal, keys=KEYS, prefix=prefix,
    )  # fmt: skip


def healing_graph() -> cmo.Graph[dict[str, Any]]:
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("heal"))

    @graph.node(entry=True)
    async def heal(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
        result = await ctx.invoke_specialist("healer", task="heal-selector", inputs={"selector": state["selector"]})
        return cmo.NodeResult({**state, "proposal": result.proposal, "confidence": result.confidence})

    return graph


async def test_a_step_invokes_a_specialist_and_gets_its_answer_through_the_server(
    a2a_server: tuple[CmoServer, str], transport: Transport
):
    server, prefix = a2a_server
    calls: list[dict[str, Any]] = []
    specialist = healer(transport, prefix, calls, delay=0.3)
    running = asyncio.create_task(specialist.run())
    graph = healing_graph()
    async with (
        await cmo.Client.connect(f"127.0.0.1:{server.port}") as client,
        serving(client, [graph], messaging=Messaging(transport, KEYS, prefix=prefix)),
    ):
        handle = await client.start(graph, {"selector": "#buy"})
        result = await handle.result(timeout=30)
        history = await client.export_history(handle.run_id)
        steps = await handle.history()
    specialist.stop()
    await running

    assert result == {"selector": "#buy", "proposal": {"selector": "#buy-fixed"}, "confidence": 0.9}
    assert calls == [{"selector": "#buy"}], "the specialist was asked more than once"
    (step,) = steps
    kinds = [(a.kind, a.name.split(".")[0]) for a in step.activities]
    assert kinds == [("a2a.prepare", "a2a"), ("a2a.request", "a2a"), ("a2a.publish", "a2a"), ("signal", "a2a")]
    assert step.attempt == 2, "the step waited (suspended) for the answer, then resumed"
    # A replay answers from the record: nothing is published, the specialist is gone.
    report = await Replayer([graph]).replay(history)
    assert report.ok, report
    assert calls == [{"selector": "#buy"}]

    # A late second answer to the same request finds the run ended: dead-lettered, not dropped.
    request_id = step.activities[1].name.removeprefix("a2a.")
    late = KEYS.sign(
        Envelope.build(
            SpecialistResult("succeeded", 0.1, Cost(0.0)),
            sender=AgentId("specialist", "healer", "1.0"), to=AgentId("orchestrator", "cmo", "1"),
            tenant="default", project="default", correlation_id=request_id,
        )
    )  # fmt: skip
    topic = f"{prefix}.default.default.agents.cmo.replies"
    await transport.publish(topic, late.to_bytes(), message_id=late.meta.message_id)

    async def late_dead_letter() -> str | None:
        found = [d for d in await transport.dead_letters(10_000) if d.message_id == late.meta.message_id]
        return found[0].reason if found else None

    assert (
        await assert_eventually(late_dead_letter, timeout=15, what="the late answer dead-lettered") == "not_delivered"
    )


async def test_no_answer_within_the_timeout_fails_the_step_with_a_specialist_timeout(
    a2a_server: tuple[CmoServer, str], transport: Transport
):
    server, prefix = a2a_server
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("nobody"))

    @graph.node(entry=True, retry=cmo.RetryPolicy(max_attempts=1))
    async def ask(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
        await ctx.invoke_specialist("nobody", task="x", timeout=timedelta(milliseconds=300))
        return cmo.NodeResult(state)

    async with (
        await cmo.Client.connect(f"127.0.0.1:{server.port}") as client,
        serving(client, [graph], messaging=Messaging(transport, KEYS, prefix=prefix)),
    ):
        handle = await client.start(graph, {})
        with pytest.raises(RunFailedError) as failed:
            await handle.result(timeout=30)
    assert failed.value.failure is not None
    assert failed.value.failure.type == "SpecialistTimeoutError"


async def test_the_server_dead_letters_a_reply_it_cannot_trust_with_the_reason(
    a2a_server: tuple[CmoServer, str], transport: Transport
):
    _, prefix = a2a_server  # the server runs: it is what consumes the replies
    topic = f"{prefix}.default.default.agents.cmo.replies"
    orchestrator, healer_id = AgentId("orchestrator", "cmo", "1"), AgentId("specialist", "healer", "1.0")
    answer = SpecialistResult("succeeded", 0.9, Cost(0.0))
    forged = HmacKeys({"k1": b"not-the-servers-key-0123456789abcdef"}, current="k1").sign(
        Envelope.build(answer, sender=healer_id, to=orchestrator, tenant="default", project="default",
                       correlation_id="a" * 64)
    )  # fmt: skip
    wrong_type = KEYS.sign(
        Envelope.build(
            SpecialistInvocationRequest("x", {}, Budget(1, 0), "2026-12-31T00:00:00Z"),
            sender=healer_id, to=orchestrator, tenant="default", project="default", correlation_id="b" * 64,
        )
    )  # fmt: skip
    for envelope in (forged, wrong_type):
        await transport.publish(topic, envelope.to_bytes(), message_id=envelope.meta.message_id)
    wanted = {forged.meta.message_id: "bad_signature", wrong_type.meta.message_id: "unsupported_type"}

    async def reasons() -> dict[str, str] | None:
        found = {d.message_id: d.reason for d in await transport.dead_letters(10_000) if d.message_id in wanted}
        return found if len(found) == len(wanted) else None

    assert await assert_eventually(reasons, timeout=15, what="both replies dead-lettered") == wanted
