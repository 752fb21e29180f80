"""A specialist in a few lines, on a real transport: answers invocations, shares them between
instances, refuses what it has no route for; an orchestrator's decision notices."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from cmo.a2a import (
    AgentId,
    Budget,
    Cost,
    DecisionNotice,
    Envelope,
    HmacKeys,
    Issue,
    NextAction,
    ScoringSummary,
    SpecialistInvocationRequest,
    SpecialistResult,
    TaskRequest,
    Topic,
)
from cmo.a2a.agents import DecisionNoticePublisher, Specialist
from cmo.a2a.pipeline import Outbound
from cmo.a2a.transports import MemoryTransport, Transport
from tests.support.waiting import assert_eventually

ORCHESTRATOR = AgentId("orchestrator", "triage", "1.0")
HEALER = AgentId("specialist", "healer", "1.0")
KEYS = HmacKeys({"k1": b"k" * 32}, current="k1")
REPLIES = str(Topic.replies("acme", "web", "triage"))


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    opened: Transport
    if request.param == "memory":
        opened = MemoryTransport()
    else:
        from cmo.a2a.transports.redis import RedisTransport

        opened = RedisTransport.from_url(
            request.getfixturevalue("redis_server"), key_prefix=f"t{uuid.uuid4().hex[:8]}:"
        )
    try:
        yield opened
    finally:
        await opened.close()


def invocation(n: int) -> Envelope:
    payload = SpecialistInvocationRequest("heal", {"n": n}, Budget(1, 0.1), "2026-12-31T00:00:00Z")
    return Envelope.build(payload, sender=ORCHESTRATOR, to=HEALER, tenant="acme", project="web", reply_to=REPLIES)


async def test_two_specialist_instances_share_the_invocations_and_answer_each_once(transport: Transport):
    handled: list[tuple[str, int]] = []

    def instance(name: str) -> Specialist:
        async def heal(request: SpecialistInvocationRequest, envelope: Envelope) -> SpecialistResult:
            handled.append((name, request.inputs["n"]))
            await asyncio.sleep(0.01)
            return SpecialistResult("succeeded", 0.8, Cost(0.001), proposal={"n": request.inputs["n"]})

        return Specialist(
            HEALER, tenant="acme", project="web", transport=transport, handler=heal, keys=KEYS, consumer=name
        )

    replies = await transport.subscribe(REPLIES, group="orchestrator", consumer="o1", max_pending=100)
    specialists = [instance("a"), instance("b")]
    running = [asyncio.create_task(s.run()) for s in specialists]
    await asyncio.sleep(0.1)  # both subscribed
    sender = Outbound(transport, keys=KEYS)
    requests = [await sender.send(invocation(n), specialists[0].topic) for n in range(20)]
    answers: dict[str, SpecialistResult] = {}
    async for delivery in replies:
        reply = Envelope.parse(delivery.data)
        KEYS.verify(reply)
        assert reply.meta.correlation_id is not None
        answers[reply.meta.correlation_id] = reply.payload_as(SpecialistResult)
        await delivery.ack()
        if len(answers) == 20:
            break
    for specialist in specialists:
        specialist.stop()
    await asyncio.gather(*running)
    assert set(answers) == {r.meta.message_id for r in requests}
    assert sorted(n for _, n in handled) == list(range(20)), "an invocation was handled twice or not at all"
    assert {name for name, _ in handled} == {"a", "b"}, "one instance took every invocation"


async def test_a_specialist_dead_letters_a_type_it_does_not_handle(transport: Transport):
    async def heal(request: SpecialistInvocationRequest, envelope: Envelope) -> SpecialistResult:
        raise AssertionError("not for this")

    specialist = Specialist(HEALER, tenant="acme", project="web", transport=transport, handler=heal, keys=KEYS)
    running = asyncio.create_task(specialist.run())
    await asyncio.sleep(0.1)
    task = Envelope.build(TaskRequest("x", {}), sender=ORCHESTRATOR, to=HEALER, tenant="acme", project="web")
    await Outbound(transport, keys=KEYS).send(task, specialist.topic)
    [dead] = await assert_eventually(transport.dead_letters, what="dead-lettered")
    specialist.stop()
    await running
    assert dead.reason == "unsupported_type"
    assert specialist.inbound.rejected == {"unsupported_type": 1}


async def test_a_decision_notice_goes_to_the_orchestrators_decisions_topic(transport: Transport):
    publisher = DecisionNoticePublisher(Outbound(transport, keys=KEYS), me=ORCHESTRATOR, tenant="acme", project="web")
    watcher = await transport.subscribe("qa.acme.web.orchestrators.*.decisions", group="audit", consumer="a1")
    sent = await publisher.publish(
        "approve",
        "the healer's selector passes the test",
        ScoringSummary(0.9, 0.95, 27.5),
        to=HEALER,
        next_actions=[NextAction("open a pull request", HEALER, "2026-12-02T09:00:00Z")],
        issues=[Issue("flaky", "passed on the second try", "warning")],
    )
    async for delivery in watcher:
        received = Envelope.parse(delivery.data)
        await delivery.ack()
        break
    assert delivery.topic == "qa.acme.web.orchestrators.triage.decisions"
    assert received == sent
    notice = received.payload_as(DecisionNotice)
    assert (notice.decision, notice.scoring_summary.total_score) == ("approve", 27.5)
