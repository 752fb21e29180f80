"""A specialist killed with kill -9 in the middle of handling: the invocation goes to another
instance, which handles it once; the killed one never made its effect."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest

from cmo.a2a import AgentId, Budget, Envelope, SpecialistInvocationRequest, SpecialistResult, Topic
from cmo.a2a.pipeline import Outbound
from cmo.a2a.transports.redis import RedisTransport
from tests.e2e.specialist_main import KEYS
from tests.support.processes import Processes
from tests.support.waiting import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

ORCHESTRATOR = AgentId("orchestrator", "triage", "1.0")
REPLIES = str(Topic.replies("acme", "web", "triage"))


async def test_a_specialist_killed_mid_handle_hands_the_invocation_to_another(
    processes: Processes, redis_server: str, tmp_path: Path
):
    prefix = f"e2e-{uuid.uuid4().hex[:8]}:"
    markers = tmp_path / "markers"
    markers.mkdir()

    def specialist(*extra: str) -> list[str]:
        return [
            sys.executable, "-m", "tests.e2e.specialist_main",
            "--redis", redis_server, "--key-prefix", prefix, "--marker-dir", str(markers), *extra,
        ]  # fmt: skip

    transport = RedisTransport.from_url(redis_server, key_prefix=prefix)
    try:
        replies = await transport.subscribe(REPLIES, group="orchestrator", consumer="o1")
        doomed = await processes.start_program(specialist("--hold"), role="specialist")
        payload = SpecialistInvocationRequest("heal", {"selector": "#x"}, Budget(1, 0.1), "2026-12-31T00:00:00Z")
        request = Envelope.build(
            payload, sender=ORCHESTRATOR, to=AgentId("specialist", "healer", "1.0"), tenant="acme", project="web",
            reply_to=REPLIES, idempotency_key="run-1:step-0:seq-0",
        )  # fmt: skip
        sent = await Outbound(transport, keys=KEYS).send(request, Topic.specialist_invoke("acme", "web", "healer"))
        started = await assert_eventually(lambda: list(markers.glob("*.started")), what="the handler started")
        assert started[0].name == f"{doomed.worker_id}.started"
        await doomed.kill()

        survivor = await processes.start_program(specialist(), role="specialist")
        async for delivery in replies:
            reply = Envelope.parse(delivery.data)
            await delivery.ack()
            break
        assert reply.meta.correlation_id == sent.meta.message_id
        assert reply.payload_as(SpecialistResult).proposal == {"by": survivor.worker_id}
        effects = sorted(markers.glob("*.effect"))
        assert [p.name for p in effects] == [f"{survivor.worker_id}.effect"], "the effect ran twice or by the dead one"
        assert json.loads(effects[0].read_text())["message_id"] == sent.meta.message_id
    finally:
        await transport.close()
